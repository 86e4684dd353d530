"""``fabric stats``: sizes, and how far behind the log each view was when asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import child_env, segment_files

from fabric import MemoryFabric


def fabric_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric.cli", *args], capture_output=True, text=True, timeout=60,
                          env=child_env())


def ok_json(*args: str) -> Any:
    out = fabric_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_stats_of_a_store_with_a_lagging_sqlite_view(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with MemoryFabric(backend="sqlite", config={"data_dir": str(d), "segment_bytes": 2048}) as f:
        ids = f.store_many([{"content": f"record {i} " + "w" * 40} for i in range(30)])
        assert f.count() == 30  # a read: the (lazy) sqlite view catches up
        at = f.log.last_seq
    with MemoryFabric(config={"data_dir": str(d), "segment_bytes": 2048}) as f:  # the sqlite view is not fed
        f.delete(ids[0])
        f.store("one more")
        last = f.log.last_seq
    result = ok_json("stats", "-d", str(d))
    assert result["total_records"] == 30 and result["events"] == last == at + 2
    assert result["segments"] == len(segment_files(d)) > 1
    assert result["log_bytes"] == sum(p.stat().st_size for p in segment_files(d))
    assert result["views"]["memory"]["behind"] == 0
    sqlite = result["views"]["sqlite"]
    assert (sqlite["position"], sqlite["behind"], sqlite["records"]) == (at, 2, 30)
    assert result["first_event"] < result["last_event"]
    caught_up = ok_json("stats", "-d", str(d), "--backend", "sqlite")  # serving from it catches it up...
    assert caught_up["views"]["sqlite"]["behind"] == 2 and caught_up["views"]["sqlite"]["caught_up_on_open"]
    assert ok_json("stats", "-d", str(d))["views"]["sqlite"]["behind"] == 0  # ...so now it is current


def test_stats_by_type_and_human_output(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with MemoryFabric(config={"data_dir": str(d), "writer": "w1"}) as f:
        rid = f.store("a")
        f.update(rid, content="b")
        f.retrieve(rid)
    result = ok_json("stats", "-d", str(d), "--by-type")
    assert result["event_types"] == {"store_created": 1, "stored": 1, "updated": 1, "accessed": 1}
    assert result["writers"] == {"w1": 4}
    human = fabric_cli("stats", "-d", str(d), "--by-type")
    assert human.returncode == 0
    for word in ("records", "events", "segments", "memory", "stored", "w1"):
        assert word in human.stdout


def test_stats_errors(tmp_path: Path) -> None:
    missing = fabric_cli("stats", "-d", str(tmp_path / "missing"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    d = tmp_path / "s"
    with MemoryFabric(config={"data_dir": str(d)}) as f:
        f.store("x")
    bad_backend = fabric_cli("stats", "-d", str(d), "--backend", "mongodb")
    assert bad_backend.returncode == 2 and "unknown backend" in bad_backend.stderr
    seg = segment_files(d)[-1]
    data = bytearray(seg.read_bytes())
    at = data.index(b"\n") + 1
    data[at] = ord("?")
    seg.write_bytes(bytes(data))
    damaged = fabric_cli("stats", "-d", str(d))
    assert damaged.returncode == 4 and seg.name in damaged.stderr and f"byte offset {at}" in damaged.stderr
