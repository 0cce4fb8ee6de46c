"""`shadowlane demo --scenario incident` end to end: real proxy, real MLflow, real gates. The
candidate beats the champion's AUC, fails fairness, is refused promotion; v1 keeps serving."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gates.audit import AuditLog
from gates.registry import connect
from shadowlane.incident_demo import main as incident_main
from shadowlane.record import decode
from shadowlane.segments import read_lines


@pytest.mark.slow
def test_incident_demo_blocks_the_biased_candidate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Called directly: `shadowlane demo` keeps --requests for its basic scenario.
    rc = incident_main(["--dir", str(tmp_path), "--requests", "1600"])
    out = capsys.readouterr().out
    assert rc == 0, out
    root = tmp_path / "incident"

    # The shadow log was written by the proxy: v1 answered every request, v2 shadowed each one.
    recs = [decode(line) for line in read_lines(root / "shadowlog")]
    assert len(recs) == 1600
    assert {(r["champion"]["model"], r["champion"]["version"]) for r in recs} == {("credit-risk", 1)}
    assert {(r["shadow"]["version"], r["shadow"]["status"]) for r in recs} == {(2, "ok")}

    evaluation = json.loads((root / "evaluation.json").read_text())
    gates = {g["name"]: g for g in evaluation["gates"]}
    assert evaluation["verdict"] == "fail"
    assert gates["accuracy"]["passed"] and gates["accuracy"]["values"]["delta"] > 0
    assert not gates["fairness"]["passed"]
    assert 2.0 < gates["fairness"]["values"]["groups"]["small_business"]["decline_ratio"] < 4.5
    assert [n for n, g in gates.items() if not g["passed"]] == ["fairness"]

    client = connect(f"sqlite:///{root}/mlflow.db")
    v2 = client.get_model_version("credit-risk", "2")
    assert v2.tags["gate.verdict"] == "fail" and v2.tags["gate.fairness.passed"] == "false"
    assert v2.tags["lifecycle.stage"] == "None"
    assert client.get_registered_model("credit-risk").aliases == {"production": 1}

    audit = AuditLog(root / "audit.jsonl")
    assert audit.verify().ok
    kinds = [r["kind"] for r in audit.records()]
    assert kinds == ["register", "register", "gate.run", "promote", "review.request", "review.approve",
                     "promote", "gate.run"]
    last = list(audit.records())[-1]["payload"]
    assert last["version"] == 2 and last["verdict"] == "fail" and last["production"]["version"] == 1
    assert last["data_version"]

    report = (root / "report.html").read_text()
    assert "fairness" in report and "small_business" in report
    assert "refused" in out and "fairness" in out and str(root / "report.html") in out
