"""The Kafka sink's spill on its own (no broker): bound, order, and what happens to the spill of
a process that crashed mid-write (a real crash: a child process that `os._exit`s)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from proxy.sinks.spill import Spill
from tests.fixtures.proxy import REPO


def items(n: int, start: int = 0) -> list[tuple[str, bytes | None, bytes]]:
    return [("t", None if i % 5 == 0 else b"k%d" % i, b'{"seq":%d}' % i) for i in range(start, start + n)]


def drain(spill: Spill) -> tuple[list[tuple[str, bytes | None, bytes]], int]:
    out, lost = [], 0
    while spill.pending():
        chunk, n_lost = spill.head(7)
        lost += n_lost
        out.extend(chunk)
        spill.ack(len(chunk))
    return out, lost


def test_append_keeps_order_up_to_the_bound_and_replay_frees_it(tmp_path):
    spill = Spill(tmp_path, max_bytes=2048, segment_bytes=1024)
    assert spill.open() == 0
    kept, dropped = spill.append(items(200))
    assert kept + dropped == 200 and kept > 0 and dropped > 0 and spill.bytes <= 2048
    assert spill.append([("t", b"k", b"line\nbreak")]) == (0, 1)
    out, lost = drain(spill)
    assert out == items(kept) and lost == 0 and spill.bytes == 0
    assert spill.append(items(3, 500)) == (3, 0)  # room again
    spill.close()
    reopened = Spill(tmp_path, max_bytes=2048, segment_bytes=1024)
    assert reopened.open() == 1  # the closed one is adopted with its 3 records
    assert drain(reopened) == (items(3, 500), 0)
    reopened.close()
    assert list(tmp_path.iterdir()) == []


def test_a_live_spill_is_left_alone(tmp_path):
    a = Spill(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    a.open()
    a.append(items(10))
    b = Spill(tmp_path, max_bytes=1 << 20, segment_bytes=1024)
    assert b.open() == 0 and not b.pending()
    assert drain(a) == (items(10), 0)
    a.close()
    b.close()


def test_the_spill_of_a_crashed_process_is_adopted_and_its_torn_line_counted(tmp_path):
    child = textwrap.dedent(f"""
        import os
        from proxy.sinks.spill import Spill
        s = Spill({str(tmp_path)!r}, max_bytes=1 << 20, segment_bytes=1 << 20)
        s.open()
        s.append([("t", b"k%d" % i, b'{{"seq":%d}}' % i) for i in range(5)])
        with open(s._writer.current_path, "ab") as f:
            f.write(b"t\\tazE=\\t{{\\"seq\\":5")  # half a line, then the process dies
        os._exit(1)
    """)
    proc = subprocess.run([sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    [crashed] = list(tmp_path.iterdir())
    assert any(p.name.endswith(".jsonl.open") for p in crashed.iterdir())

    spill = Spill(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    assert spill.open() == 1
    out, lost = drain(spill)
    assert [v for _, _, v in out] == [b'{"seq":%d}' % i for i in range(5)] and lost == 1
    assert [k for _, k, _ in out] == [b"k%d" % i for i in range(5)]
    spill.close()
