"""kill -9 at random points, many times: every acknowledged write survives, no gaps, the chain verifies.

A writer subprocess prints each id once `store`/`store_many` returned; we SIGKILL it after a
random number of acknowledgements (sometimes before it even opened the store), then check
the log on disk, write on with a new child, and so on (Litestream's reproduce-critical-bug
loop, as a test). Set FABRIC_CRASH_ROUNDS=<factor> to multiply the rounds for a longer soak.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_dense, child_env, raw_lines, seeded

from fabric import MemoryFabric
from fabric.log import EventLog

WRITER = Path(__file__).with_name("crash_writer.py")
FACTOR = float(os.environ.get("FABRIC_CRASH_ROUNDS", "1"))


def _one_round(data_dir: Path, mode: str, durability: str, tag: str, rng: random.Random) -> tuple[list[str], str]:
    """Start a writer, kill it at a random point; return the acknowledged ids and its stderr."""
    proc = subprocess.Popen([sys.executable, str(WRITER), str(data_dir), mode, durability, tag],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    assert proc.stdout is not None and proc.stderr is not None
    acked: list[str] = []
    try:
        if rng.random() < 0.1:
            time.sleep(rng.random() * 0.15)  # somewhere in start-up: imports, opening, recovery
        else:
            assert proc.stdout.readline() == "ready\n", proc.stderr.read()
            for _ in range(rng.randint(0, 40)):
                line = proc.stdout.readline()
                if not line.endswith("\n"):
                    raise AssertionError(f"writer died on its own: {proc.stderr.read()}")
                acked.extend(line.split())
            if rng.random() < 0.5:
                time.sleep(rng.random() * 0.004)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    rest = proc.stdout.read()
    for line in rest.split("\n")[:-1]:  # complete lines only: each one was acknowledged
        if line != "ready":
            acked.extend(line.split())
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err
    return acked, err


def _check_log(data_dir: Path, acked: list[str], mode: str) -> int:
    """Reopen, verify the chain, and check every acknowledged id is on disk; return the event count."""
    with EventLog(data_dir, create=False) as log:
        report = log.verify()
    lines = raw_lines(data_dir)
    assert_dense([ln.env["seq"] for ln in lines])
    assert report.events == len(lines)
    stored = [ln.env for ln in lines if ln.env["type"] == "stored"]
    on_disk = {e["id"] for e in stored}
    missing = [rid for rid in acked if rid not in on_disk]
    assert not missing, f"{len(missing)} acknowledged ids lost, e.g. {missing[:3]}"
    assert len(on_disk) == len(stored), "an id was stored twice"
    if mode == "many":
        sizes = collections.Counter(e["data"]["metadata"]["batch"] for e in stored)
        wanted = {e["data"]["metadata"]["batch"]: e["data"]["metadata"]["n"] for e in stored}
        half = {b: (sizes[b], wanted[b]) for b in sizes if sizes[b] != wanted[b]}
        assert not half, f"batches only partly there: {half}"
    return len(lines)


@pytest.mark.parametrize("mode, durability, rounds", [
    ("single", "always", 60),
    ("many", "always", 25),
    ("single", "batch", 25),
    ("many", "batch", 15),
    ("single", "none", 10),  # bytes go to the OS on every append in every mode
])
def test_kill_9_loses_no_acknowledged_write(tmp_path: Path, mode: str, durability: str, rounds: int) -> None:
    rng = seeded(f"kill-{mode}-{durability}")
    data_dir = tmp_path / "store"
    with MemoryFabric(config={"data_dir": str(data_dir)}):
        pass
    all_acked: list[str] = []
    for r in range(max(1, int(rounds * FACTOR))):
        acked, err = _one_round(data_dir, mode, durability, f"r{r}", rng)
        all_acked += acked
        try:
            _check_log(data_dir, all_acked, mode)
        except AssertionError as e:
            raise AssertionError(f"after kill {r + 1}: {e}\nwriter stderr:\n{err}") from e
    with MemoryFabric(config={"data_dir": str(data_dir)}) as fabric:
        assert fabric.count() == len({ln.env["id"] for ln in raw_lines(data_dir) if ln.env["type"] == "stored"})
        for rid in all_acked[:: max(1, len(all_acked) // 50)]:
            assert fabric.retrieve(rid) is not None
        fabric.store("after all the crashes")
    with EventLog(data_dir, create=False) as log:
        log.verify()
