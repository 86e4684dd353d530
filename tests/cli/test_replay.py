"""``fabric replay``, run as users run it (a subprocess on real files): filters, outputs, views, errors, memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, raw_lines, segment_files

from fabric import MemoryFabric
from fabric.events import Stored, encode_payload
from fabric.log import EventLog


def fabric_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env or child_env())


def json_lines(*args: str) -> list[dict[str, Any]]:
    out = fabric_cli(*args, "--json")
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("replay") / "store"
    ids: dict[str, str] = {}
    with MemoryFabric(config={"data_dir": str(d), "writer": "alice", "segment_bytes": 2048}) as f:
        ids["a"] = f.store("Dana prefers dark mode.", {"user": "dana"}, ["prefs"], "knowledge")
        ids["b"] = f.store("Sam runs marathons.", {"user": "sam"}, ["health"])
        for i in range(20):
            f.store(f"filler {i} " + "z" * 60, tags=["filler"])
        f.update(ids["a"], content="Dana prefers light mode.")
        f.update(ids["b"], tags=["health", "prefs"])
        f.delete(ids["b"])
        f.flush()
    return d, ids


def test_json_lines_stream_every_event_in_order(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    events = json_lines("replay", "--data-dir", str(d))
    on_disk = [line.env for line in raw_lines(d)]
    assert [e["seq"] for e in events] == [e["seq"] for e in on_disk] == list(range(1, len(on_disk) + 1))
    assert [e["hash"] for e in events] == [e["hash"] for e in on_disk]
    first_a = next(e for e in events if e["id"] == ids["a"])
    assert first_a["type"] == "stored" and first_a["data"]["content"] == "Dana prefers dark mode."
    assert first_a["data"]["metadata"] == {"user": "dana"} and first_a["time"].endswith("+00:00")
    assert len(segment_files(d)) > 1


def test_raw_json_is_the_log_as_stored(store: tuple[Path, dict[str, str]]) -> None:
    d, _ = store
    out = fabric_cli("replay", "-d", str(d), "--raw", "--json")
    assert out.returncode == 0, out.stderr
    assert [json.loads(x) for x in out.stdout.splitlines()] == [line.env for line in raw_lines(d)]


def test_filters(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    dd = str(d)
    assert [e["seq"] for e in json_lines("replay", "-d", dd, "--from-seq", "3", "--to-seq", "6")] == [3, 4, 5, 6]
    types = {e["type"] for e in json_lines("replay", "-d", dd, "--type", "updated", "--type", "deleted")}
    assert types == {"updated", "deleted"}
    assert {e["id"] for e in json_lines("replay", "-d", dd, "--id", ids["b"])} == {ids["b"]}
    tagged = json_lines("replay", "-d", dd, "--tag", "prefs")
    assert [(e["id"], e["type"]) for e in tagged] == [
        (ids["a"], "stored"), (ids["a"], "updated"), (ids["b"], "updated"), (ids["b"], "deleted")]
    assert json_lines("replay", "-d", dd, "--writer", "nobody") == []
    everything = json_lines("replay", "-d", dd)
    middle = everything[10]["time"]
    since = json_lines("replay", "-d", dd, "--since", middle)
    assert since[0]["seq"] <= 11 and all(e["ts"] >= everything[10]["ts"] for e in since)
    until = json_lines("replay", "-d", dd, "--until", middle)
    assert until[-1]["seq"] >= 11 and all(e["ts"] <= everything[10]["ts"] for e in until)
    assert len(json_lines("replay", "-d", dd, "--since", "1h")) == len(everything)  # relative ages
    assert json_lines("replay", "-d", dd, "--until", "1h") == []


def test_human_table(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    out = fabric_cli("replay", "-d", str(d), "--type", "updated")
    assert out.returncode == 0, out.stderr
    assert "seq" in out.stdout and "updated" in out.stdout and ids["a"] in out.stdout
    assert "changed content" in out.stdout and "2 event(s)" in out.stdout


def test_to_view_memory_folds_the_selection(store: tuple[Path, dict[str, str]]) -> None:
    d, _ = store
    out = json_lines("replay", "-d", str(d), "--to-view", "memory", "--tag", "filler")
    assert out == [{"view": "memory", "applied": 20, "position": out[0]["position"], "was_at": 0, "records": 20}]
    human = fabric_cli("replay", "-d", str(d), "--to-view", "memory")
    assert human.returncode == 0 and "21 record(s)" in human.stdout


def test_to_view_sqlite_continues_from_its_checkpoint(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with MemoryFabric(config={"data_dir": str(d)}) as f:
        f.store_many([{"content": f"r{i}"} for i in range(10)])
    first = json_lines("replay", "-d", str(d), "--to-view", "sqlite", "--to-seq", "5")[0]
    assert (first["was_at"], first["position"], first["applied"]) == (0, 5, 5)
    gap = fabric_cli("replay", "-d", str(d), "--to-view", "sqlite", "--from-seq", "8")
    assert gap.returncode == 2 and "gap" in gap.stderr
    second = json_lines("replay", "-d", str(d), "--to-view", "sqlite")[0]
    assert (second["was_at"], second["position"], second["records"]) == (5, 11, 10)
    filtered = fabric_cli("replay", "-d", str(d), "--to-view", "sqlite", "--type", "stored")
    assert filtered.returncode == 2 and "every event" in filtered.stderr
    with MemoryFabric(backend="sqlite", config={"data_dir": str(d)}) as f:
        assert f.count() == 10


def test_follow_streams_new_events(store: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    d = tmp_path / "live"
    with MemoryFabric(config={"data_dir": str(d)}) as f:
        f.store("before")
        last = f.log.last_seq
    proc = subprocess.Popen([sys.executable, "-m", "fabric.cli", "replay", "-d", str(d), "--follow", "--json",
                             "--from-seq", str(last + 1), "--count", "3", "--timeout", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        time.sleep(0.5)
        with MemoryFabric(config={"data_dir": str(d)}) as f:
            for i in range(3):
                f.store(f"live {i}")
                time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 0, err
    got = [json.loads(x) for x in out.splitlines()]
    assert [e["seq"] for e in got] == [last + 1, last + 2, last + 3]
    assert [e["data"]["content"] for e in got] == ["live 0", "live 1", "live 2"]


def test_errors_have_the_documented_exit_codes(store: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    d, _ = store
    missing = fabric_cli("replay", "-d", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = fabric_cli("replay", "-d", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "no event log" in empty.stderr
    unknown = fabric_cli("replay", "-d", str(d), "--to-view", "elastic")
    assert unknown.returncode == 2 and "unknown view" in unknown.stderr
    bad_type = fabric_cli("replay", "-d", str(d), "--type", "bogus")
    assert bad_type.returncode == 2 and "stored" in bad_type.stderr
    bad_time = fabric_cli("replay", "-d", str(d), "--since", "last tuesday")
    assert bad_time.returncode == 2
    assert fabric_cli("replay", "-d", str(d), "--bogus-flag").returncode == 2
    for out in (missing, empty, unknown, bad_type, bad_time):
        assert "Traceback" not in out.stderr


def test_corrupt_log_exits_4_naming_segment_and_offset(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with MemoryFabric(config={"data_dir": str(d), "segment_bytes": 1024}) as f:
        for i in range(30):
            f.store(f"record {i} " + "q" * 40)
    seg = segment_files(d)[1]  # a sealed segment in the middle
    data = bytearray(seg.read_bytes())
    at = data.index(b"\n") + 1
    data[at] = ord("@")
    seg.write_bytes(bytes(data))
    out = fabric_cli("replay", "-d", str(d), "--json")
    assert out.returncode == 4
    assert f"segment {seg.name}" in out.stderr and f"byte offset {at}" in out.stderr
    assert "Traceback" not in out.stderr


def _write_events(path: Path, n: int) -> None:
    with EventLog(path, durability="none") as log:
        done = 0
        while done < n:
            k = min(5000, n - done)
            log.append([("stored", f"id-{done + i:07d}", encode_payload(Stored(content=f"event {done + i} of a "
                                                                                        "big replay", tags=["t"])))
                        for i in range(k)])
            done += k


def _peak_rss_kb(out_file: Path, *args: str) -> int:
    """Run the CLI with stdout to a file and return the child's own peak RSS (os.wait4: not other children's)."""
    with open(out_file, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fabric.cli", *args], stdout=out, stderr=subprocess.PIPE,
                                env=child_env())
        assert proc.stderr is not None
        err = proc.stderr.read()
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stderr.close()
    assert proc.returncode == 0, err
    return int(usage.ru_maxrss)


def _count_lines(path: Path) -> tuple[int, bytes]:
    count = 0
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            count += chunk.count(b"\n")
            last = (last + chunk)[-4096:]
    return count, last.rstrip(b"\n").rsplit(b"\n", 1)[-1]


def test_replay_streams_in_constant_memory(tmp_path: Path) -> None:
    """Peak RSS replaying 200k events must not grow like the event count (vs 50k of the same log)."""
    d = tmp_path / "big"
    _write_events(d, 200_000)
    small = _peak_rss_kb(tmp_path / "small.jsonl", "replay", "-d", str(d), "--json", "--to-seq", "50001")
    big = _peak_rss_kb(tmp_path / "big.jsonl", "replay", "-d", str(d), "--json")
    assert _count_lines(tmp_path / "small.jsonl")[0] == 50_001
    lines, last = _count_lines(tmp_path / "big.jsonl")
    assert lines == 200_001 and json.loads(last)["seq"] == 200_001
    print(f"peak RSS: 50k events {small} KB, 200k events {big} KB")
    assert big < small * 1.2, f"peak RSS grew with the log: {small} KB for 50k events, {big} KB for 200k"


def test_encrypted_store_needs_its_key_except_raw(tmp_path: Path) -> None:
    d = tmp_path / "enc"
    with MemoryFabric(config={"data_dir": str(d)}, encryption_key="correct horse") as f:
        f.store("the secret plan", tags=["plans"])
    no_key = fabric_cli("replay", "-d", str(d))
    assert no_key.returncode == 2 and "key" in no_key.stderr.lower()
    raw = json_lines("replay", "-d", str(d), "--raw")
    assert len(raw) == 2 and "the secret plan" not in json.dumps(raw)  # ciphertext only, no key needed
    env = child_env(IOA_FABRIC_KEY="correct horse")
    out = fabric_cli("replay", "-d", str(d), "--tag", "plans", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert [json.loads(x)["data"]["content"] for x in out.stdout.splitlines()] == ["the secret plan"]
    wrong = fabric_cli("replay", "-d", str(d), "--key", "wrong horse")
    assert wrong.returncode == 2
    verify = fabric_cli("audit", "verify", "-d", str(d))  # the chain covers payload digests: no key
    assert verify.returncode == 0, verify.stderr
