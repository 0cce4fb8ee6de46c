"""The hash-chained audit log: appends chain, and every kind of tampering is caught by seq."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.audit import GENESIS_HASH, AuditLog, record_hash
from gates.cli import audit_main


def _log(tmp_path: Path, n: int = 5) -> AuditLog:
    clock = iter(range(1000, 2000))
    log = AuditLog(tmp_path / "audit.jsonl", clock=lambda: float(next(clock)))
    for i in range(n):
        log.append("promote", f"actor{i}", {"model": "credit", "version": i + 1, "to": "Staging"})
    return log


def _lines(log: AuditLog) -> list[str]:
    return log.path.read_text().splitlines()


def _write(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("\n".join(lines) + "\n")


def test_records_chain_by_hash_and_seq(tmp_path: Path) -> None:
    log = _log(tmp_path, 3)
    recs = list(log.records())
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert recs[0]["prev_hash"] == GENESIS_HASH
    assert recs[1]["prev_hash"] == recs[0]["hash"] and recs[2]["prev_hash"] == recs[1]["hash"]
    for r in recs:
        assert r["hash"] == record_hash(r) and len(r["hash"]) == 64
    res = log.verify()
    assert res.ok and res.records == 3 and res.head_hash == recs[-1]["hash"]
    # A new AuditLog on the same file continues the chain.
    more = AuditLog(log.path).append("rollback", "ops", {"model": "credit"})
    assert more["seq"] == 4 and more["prev_hash"] == recs[-1]["hash"]
    assert log.verify().ok


def test_edited_record_fails_at_its_seq(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    rec = json.loads(lines[2])
    rec["payload"]["to"] = "Production"  # history rewritten
    lines[2] = json.dumps(rec)
    _write(log, lines)
    res = log.verify()
    assert not res.ok
    assert [(p.seq, p.line) for p in res.problems] == [(3, 3)]
    assert "edited" in res.problems[0].message


def test_edited_record_with_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    rec = json.loads(lines[1])
    rec["actor"] = "mallory"
    rec["hash"] = record_hash(rec)
    lines[1] = json.dumps(rec)
    _write(log, lines)
    res = log.verify()
    assert [p.seq for p in res.problems] == [3]
    assert "prev_hash" in res.problems[0].message


def test_removed_record_is_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    del lines[1]
    _write(log, lines)
    res = log.verify()
    assert not res.ok and res.problems[0].seq == 3
    assert "removed" in res.problems[0].message


def test_reordered_records_are_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    lines[1], lines[2] = lines[2], lines[1]
    _write(log, lines)
    res = log.verify()
    assert not res.ok and res.problems[0].seq == 3 and res.problems[0].line == 2


def test_inserted_record_is_detected(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = _lines(log)
    prev = json.loads(lines[1])
    forged = {"seq": 3, "ts": prev["ts"] + 1, "kind": "review.approve", "actor": "mallory",
              "payload": {"model": "credit", "version": 2}, "prev_hash": prev["hash"]}
    forged["hash"] = record_hash(forged)
    lines.insert(2, json.dumps(forged))
    _write(log, lines)
    res = log.verify()
    assert not res.ok and res.problems[0].line == 4  # the genuine seq 3 no longer follows


def test_truncation_needs_the_expected_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    head = log.verify().head_hash
    _write(log, _lines(log)[:-1])
    assert log.verify().ok  # a shorter chain is self-consistent ...
    res = log.verify(expect_head=head)
    assert not res.ok and "cut off" in res.problems[0].message  # ... but not the head we saw


def test_cli_verify_exit_codes_and_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path)
    assert audit_main(["verify", "--log", str(log.path)]) == 0
    assert "5 records, chain intact" in capsys.readouterr().out
    lines = _lines(log)
    del lines[3]
    _write(log, lines)
    assert audit_main(["verify", "--log", str(log.path)]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "seq 5" in err


def test_cli_show_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = _log(tmp_path)
    assert audit_main(["show", "--log", str(log.path), "--version", "2", "--json"]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["seq"] for r in out] == [2]
    assert audit_main(["show", "--log", str(log.path), "--last", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_append_refuses_after_a_torn_write(tmp_path: Path) -> None:
    from gates.audit import AuditError

    log = _log(tmp_path, 2)
    with open(log.path, "ab") as f:
        f.write(b'{"seq": 3, "ts": 1')  # the process died mid-record
    with pytest.raises(AuditError, match="partial record"):
        log.append("promote", "ops", {})
    res = log.verify()
    assert not res.ok and res.problems[0].line == 3 and "not valid JSON" in res.problems[0].message


@pytest.mark.parametrize("edit", [('"actor":"actor2"', '"actor":"\\ud800"'), ('"ts":1002.0', '"ts":NaN')])
def test_edit_to_unhashable_content_is_reported_not_raised(tmp_path: Path, edit: tuple[str, str]) -> None:
    # JSON that json.loads accepts but canonical JSON cannot encode (a lone surrogate, NaN)
    log = _log(tmp_path)
    text = log.path.read_text()
    assert edit[0] in text
    log.path.write_text(text.replace(*edit))
    res = log.verify()
    assert [(p.seq, p.line) for p in res.problems] == [(3, 3)]
    assert "edited" in res.problems[0].message
