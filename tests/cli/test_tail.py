"""``fabric tail`` and ``fabric watch`` while other processes write: nothing missed, nothing repeated."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from helpers import child_env, segment_files

from fabric import MemoryFabric

WRITER = r"""
import random, sys, time
from fabric import MemoryFabric
path, total = sys.argv[1], int(sys.argv[2])
rnd = random.Random(total)
with MemoryFabric(config={"data_dir": path, "segment_bytes": 2048, "writer": "bursty"}) as f:
    done = 0
    while done < total:
        n = min(total - done, rnd.choice([1, 3, 8, 25]))
        f.store_many([{"content": f"burst record {done + i}", "tags": ["b"]} for i in range(n)])
        done += n
        time.sleep(rnd.uniform(0, 0.02))
"""


def fabric_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fabric.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def new_store(path: Path, n: int = 3) -> int:
    with MemoryFabric(config={"data_dir": str(path)}) as f:
        for i in range(n):
            f.store(f"old {i}")
        return f.log.last_seq


def test_tail_no_follow_prints_the_latest(tmp_path: Path) -> None:
    d = tmp_path / "s"
    last = new_store(d, 5)
    out = fabric_cli("tail", "-d", str(d), "-n", "3", "--no-follow", "--json")
    assert out.returncode == 0, out.stderr
    assert [json.loads(x)["seq"] for x in out.stdout.splitlines()] == [last - 2, last - 1, last]
    human = fabric_cli("tail", "-d", str(d), "-n", "2", "--no-follow")
    assert human.returncode == 0 and "old 4" in human.stdout and "old 2" not in human.stdout


def test_tail_follows_a_bursty_writer_across_segments(tmp_path: Path) -> None:
    d = tmp_path / "s"
    last = new_store(d)
    total = 300
    tail = start_cli("tail", "-d", str(d), "--from-seq", str(last + 1), "--count", str(total), "--json",
                     "--timeout", "60", "--poll", "0.2")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(d), str(total)], stderr=subprocess.PIPE, text=True,
                              env=child_env())
    try:
        _, werr = writer.communicate(timeout=60)
        out, err = tail.communicate(timeout=60)
    finally:
        for p in (tail, writer):
            if p.poll() is None:
                p.kill()
    assert writer.returncode == 0, werr
    assert tail.returncode == 0, err
    events = [json.loads(x) for x in out.splitlines()]
    assert [e["seq"] for e in events] == list(range(last + 1, last + total + 1))
    assert [e["data"]["content"] for e in events] == [f"burst record {i}" for i in range(total)]
    assert len(segment_files(d)) > 3


def test_tail_filters_and_timeout(tmp_path: Path) -> None:
    d = tmp_path / "s"
    new_store(d)
    started = time.monotonic()
    quiet = fabric_cli("tail", "-d", str(d), "-n", "0", "--timeout", "1", "--json")
    assert quiet.returncode == 0 and quiet.stdout == "" and time.monotonic() - started < 20
    typed = fabric_cli("tail", "-d", str(d), "-n", "100", "--no-follow", "--type", "store_created", "--json")
    assert [json.loads(x)["type"] for x in typed.stdout.splitlines()] == ["store_created"]


def test_watch_summarises_live_changes(tmp_path: Path) -> None:
    d = tmp_path / "s"
    new_store(d, 4)
    watch = start_cli("watch", "-d", str(d), "--json", "--count", "6", "--timeout", "30", "--interval", "0.2")
    try:
        assert watch.stdout is not None
        first = json.loads(watch.stdout.readline())  # it is following now: what comes next is new
        assert (first["events"], first["records"], first["new_events"]) == (5, 4, 0)
        with MemoryFabric(config={"data_dir": str(d), "writer": "w2"}) as f:
            rid = f.store("new one")
            f.store_many([{"content": f"many {i}"} for i in range(4)])
            f.delete(rid)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err
    final = json.loads(out.splitlines()[-1])
    assert final["events"] == 11 and final["records"] == 4 + 4 and final["new_events"] == 6
    assert final["new_by_type"] == {"stored": 5, "deleted": 1}
    assert final["last_event"]["type"] == "deleted" and final["last_event"]["writer"] == "w2"
    assert final["last_event"]["what"] == "deleted"


def test_watch_human_and_timeout(tmp_path: Path) -> None:
    d = tmp_path / "s"
    new_store(d, 2)
    out = fabric_cli("watch", "-d", str(d), "--timeout", "0.5")
    assert out.returncode == 0, out.stderr
    assert "records" in out.stdout and "events/s" in out.stdout


def test_tail_and_watch_errors(tmp_path: Path) -> None:
    for command in ("tail", "watch"):
        out = fabric_cli(command, "-d", str(tmp_path / "missing"), "--timeout", "1")
        assert out.returncode == 2 and "does not exist" in out.stderr
    d = tmp_path / "s"
    new_store(d, 3)
    seg = segment_files(d)[-1]
    data = bytearray(seg.read_bytes())
    at = data.index(b"\n") + 1
    data[at + 2] = ord("#")
    seg.write_bytes(bytes(data))
    out = fabric_cli("tail", "-d", str(d), "--no-follow")
    assert out.returncode == 4 and seg.name in out.stderr and f"byte offset {at}" in out.stderr
