"""The ``fabric`` command line, run as a real subprocess on real directories: output, exit codes, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import child_env, raw_lines, segment_files

from fabric import MemoryFabric
from fabric.log import EventLog


def fabric_cli(*args: str, stdin: str | None = None, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric.cli", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env or child_env())


def ok_json(*args: str, **kw: Any) -> Any:
    out = fabric_cli(*args, "--json", **kw)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = tmp_path_factory.mktemp("cli") / "demo"
    return path, fabric_cli("demo", "--data-dir", str(path))


def test_help_lists_commands_and_exit_codes() -> None:
    out = fabric_cli("--help")
    assert out.returncode == 0
    for command in ("demo", "store", "get", "search", "list"):
        assert command in out.stdout
    assert "Exit codes" in out.stdout


def test_console_script_entry_point() -> None:
    """What ``fabric`` (the console script) runs: fabric.cli:main."""
    out = subprocess.run([sys.executable, "-c", "from fabric.cli import main; main()", "--help"],
                         capture_output=True, text=True, timeout=60, env=child_env())
    assert out.returncode == 0 and "search" in out.stdout


def test_demo(demo_store: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, out = demo_store
    assert out.returncode == 0, out.stderr
    assert "verified" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr
    assert segment_files(path)
    with EventLog(path, create=False) as log:
        report = log.verify()
    assert f"{report.events} events" in out.stdout


def test_list_search_get_on_the_demo_store(demo_store: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, _ = demo_store
    d = str(path)
    everything = ok_json("list", "--data-dir", d)
    with MemoryFabric(config={"data_dir": d}) as f:
        assert [r["id"] for r in everything] == [r.id for r in f.list_all()]
    assert ok_json("list", "-d", d, "--limit", "3", "--offset", "2") == everything[2:5]

    hits = ok_json("search", "peanuts recipes", "-d", d)
    assert hits and "peanuts" in hits[0]["content"] and hits[0]["score"] > 0
    dana = ok_json("search", "prefers", "-d", d, "--where", '{"user": "dana"}')
    assert dana and all(h["metadata"]["user"] == "dana" for h in dana)
    tagged = ok_json("search", "", "-d", d, "--tag", "task", "--limit", "50")
    assert tagged and all("task" in h["tags"] for h in tagged)
    typed = ok_json("search", "", "-d", d, "--type", "metadata", "--limit", "50")
    assert typed and all(h["memory_type"] == "metadata" for h in typed)
    page = ok_json("search", "", "-d", d, "--limit", "2", "--offset", "1")
    assert [h["id"] for h in page] == [h["id"] for h in ok_json("search", "", "-d", d, "--limit", "3")][1:]

    rec = ok_json("get", everything[0]["id"], "-d", d)
    assert rec["id"] == everything[0]["id"] and rec["content"] == everything[0]["content"]
    human = fabric_cli("get", everything[0]["id"], "-d", d)
    assert human.returncode == 0 and everything[0]["id"] in human.stdout


def test_store_then_get_list_search(tmp_path: Path) -> None:
    d = str(tmp_path / "new-store")  # store creates the store; the other commands need it to exist
    rid = ok_json("store", "Dana prefers dark mode", "--tag", "prefs", "--tag", "ui", "--metadata", '{"user": "dana"}',
                  "--type", "knowledge", "--tier", "cold", "--data-dir", d)["id"]
    rec = ok_json("get", rid, "--data-dir", d)
    assert (rec["content"], rec["tags"], rec["metadata"], rec["memory_type"], rec["storage_tier"]) == (
        "Dana prefers dark mode", ["prefs", "ui"], {"user": "dana"}, "knowledge", "cold")
    assert rec["schema_version"] == "1.0" and rec["timestamp"]
    mine = ok_json("store", "-", "--id", "my-id", "-d", d, stdin="from standard input\n")
    assert mine == {"id": "my-id"}
    assert ok_json("get", "my-id", "-d", d)["content"] == "from standard input\n"
    assert [r["id"] for r in ok_json("list", "-d", d)] == [rid, "my-id"]
    assert [r["id"] for r in ok_json("search", "dark mode", "-d", d)] == [rid]
    plain = fabric_cli("store", "no json flag", "-d", d)
    assert plain.returncode == 0 and len(plain.stdout.strip()) == 36
    with MemoryFabric(config={"data_dir": d}) as f:
        assert f.count() == 3


def test_store_uses_ioa_fabric_root(tmp_path: Path) -> None:
    root = tmp_path / "from-env"
    env = child_env(IOA_FABRIC_ROOT=str(root))
    rid = ok_json("store", "via the environment", env=env)["id"]
    assert ok_json("get", rid, env=env)["content"] == "via the environment"
    assert segment_files(root)


def test_get_missing_id_exits_3(tmp_path: Path) -> None:
    d = str(tmp_path / "s")
    ok_json("store", "something", "-d", d)
    out = fabric_cli("get", "no-such-id", "-d", d)
    assert out.returncode == 3
    assert "no-such-id" in out.stderr and out.stderr.startswith("Error:")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("command", [["get", "x"], ["list"], ["search", "x"]])
def test_missing_data_dir_exits_2(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "does-not-exist"
    out = fabric_cli(*command, "--data-dir", str(missing))
    assert out.returncode == 2
    assert "does not exist" in out.stderr and str(missing) in out.stderr
    assert "Traceback" not in out.stderr
    assert not missing.exists(), "a read command must not create a store"


@pytest.mark.parametrize("metadata", ['{"user": ', "not json", "[1, 2]", '"a string"', '{"n": NaN}'])
def test_bad_metadata_exits_2_and_writes_nothing(tmp_path: Path, metadata: str) -> None:
    d = tmp_path / "s"
    ok_json("store", "first", "-d", str(d))
    before = b"".join(p.read_bytes() for p in segment_files(d))
    out = fabric_cli("store", "second", "--metadata", metadata, "-d", str(d))
    assert out.returncode == 2, out.stderr
    assert "metadata" in out.stderr and "Traceback" not in out.stderr
    assert b"".join(p.read_bytes() for p in segment_files(d)) == before


@pytest.mark.parametrize("args, words", [
    (["search", "x", "--where", "{bad json"], "--where"),
    (["search", "!!!"], "no searchable words"),
    (["search", "x", "--limit", "-1"], "limit"),
    (["store", "x", "--type", "bogus"], "memory_type"),
    (["store", "x", "--id", "a/b"], "record_id"),
    (["list", "--backend", "postgres"], "unknown backend"),
])
def test_bad_input_exits_2(tmp_path: Path, args: list[str], words: str) -> None:
    d = tmp_path / "s"
    ok_json("store", "first", "-d", str(d))
    out = fabric_cli(*args, "-d", str(d))
    assert out.returncode == 2, out.stdout + out.stderr
    assert words in out.stderr and "Traceback" not in out.stderr
    assert len([ln for ln in raw_lines(d) if ln.env["type"] == "stored"]) == 1


def test_duplicate_id_exits_2(tmp_path: Path) -> None:
    d = str(tmp_path / "s")
    ok_json("store", "one", "--id", "same", "-d", d)
    out = fabric_cli("store", "two", "--id", "same", "-d", d)
    assert out.returncode == 2 and "already exists" in out.stderr


def test_usage_errors_exit_2() -> None:
    assert fabric_cli("no-such-command").returncode == 2
    assert fabric_cli("get").returncode == 2  # missing argument
    assert fabric_cli("list", "--limit", "many").returncode == 2


def test_corrupt_store_exits_4(tmp_path: Path) -> None:
    d = tmp_path / "s"
    ok_json("store", "one", "-d", str(d))
    ok_json("store", "two", "-d", str(d))
    seg = segment_files(d)[0]
    data = bytearray(seg.read_bytes())
    data[raw_lines(d)[1].offset] = ord("#")  # break a line that is not the last
    seg.write_bytes(bytes(data))
    out = fabric_cli("list", "-d", str(d))
    assert out.returncode == 4
    assert seg.name in out.stderr and "byte offset" in out.stderr
