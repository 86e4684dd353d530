"""8 threads and 2 processes append to one data_dir at once, through MemoryFabric.

Afterwards: the chain verifies, sequence numbers are dense and unique, every acknowledged
record is there exactly once, each contested record_id went to exactly one writer, and
every instance (old and new) counts the same records. Small segments make the writers
roll segments under each other's feet.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading
from pathlib import Path

from helpers import assert_dense, child_env, raw_lines

from fabric import MemoryFabric
from fabric.errors import DuplicateRecordError
from fabric.log import EventLog

WRITER = Path(__file__).with_name("concurrent_writer.py")
THREADS = 8
THREAD_OPS = 250
PROCESSES = 2
PROCESS_OPS = 700


def test_threads_and_processes_append_together(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    fabric = MemoryFabric(config={"data_dir": str(data_dir), "segment_bytes": 4096})
    procs = [subprocess.Popen([sys.executable, str(WRITER), str(data_dir), str(PROCESS_OPS), f"p{p}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=child_env())
             for p in range(PROCESSES)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n", proc.stderr.read()  # type: ignore[union-attr]

        acked: list[list[str]] = [[] for _ in range(THREADS)]
        won: list[list[str]] = [[] for _ in range(THREADS)]
        errors: list[BaseException] = []
        start = threading.Barrier(THREADS)

        def work(t: int) -> None:
            try:
                start.wait()
                for i in range(THREAD_OPS):
                    if i % 7 == 0:
                        try:
                            won[t].append(fabric.store(f"contested {i} by t{t}", record_id=f"shared-{i // 7}"))
                        except DuplicateRecordError:
                            pass
                        continue
                    if i % 10 == 0:
                        acked[t].extend(fabric.store_many([{"content": f"t{t} batch {i} #{k}"} for k in range(3)]))
                        continue
                    rid = fabric.store(f"t{t} note {i}", {"by": f"t{t}"})
                    acked[t].append(rid)
                    if i % 9 == 0:
                        rec = fabric.retrieve(rid)
                        if rec is None or rec.content != f"t{t} note {i}":
                            raise AssertionError(f"read-your-writes failed for {rid}")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
        for t in threads:
            t.start()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for t in threads:
            t.join()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            outputs.append(out.split("\n"))
        assert errors == [], errors[:3]

        for out in outputs:
            assert out[-2:] == ["done", ""]
            for line in out[:-2]:
                if line.startswith("won "):
                    won[0].append(line[4:])
                else:
                    acked[0].append(line)
        all_acked = [rid for lst in acked for rid in lst]
        all_won = [rid for lst in won for rid in lst]

        # every contested id went to exactly one writer
        assert len(all_won) == len(set(all_won))
        assert set(all_won) == {f"shared-{k}" for k in range((max(THREAD_OPS, PROCESS_OPS) + 6) // 7)}

        # the log: dense, chained, every acknowledged record exactly once, nothing else
        lines = raw_lines(data_dir)
        assert_dense([ln.env["seq"] for ln in lines])
        with EventLog(data_dir, create=False) as log:
            assert log.verify().events == len(lines)
        stored = collections.Counter(ln.env["id"] for ln in lines if ln.env["type"] == "stored")
        assert all(n == 1 for n in stored.values()), [k for k, n in stored.items() if n > 1][:5]
        assert set(stored) == set(all_acked) | set(all_won)
        assert len(all_acked) == len(set(all_acked))
        total = len(all_acked) + len(all_won)

        # every instance agrees
        assert fabric.count() == total
        for rid in all_acked[::50]:
            assert fabric.retrieve(rid) is not None
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        fabric.close()
    with MemoryFabric(config={"data_dir": str(data_dir)}) as fresh:
        assert fresh.count() == total
        assert len(fresh.search("contested", limit=1000)) == len(all_won)
