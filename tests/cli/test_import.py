"""``fabric import``: real stores written by the seed (tools/peers/seed_samples, made by IOA Core itself),
plus hand-broken files, imported as a user would (a subprocess), and read back through MemoryFabric.

Every unreadable row must be reported with its location, never dropped silently, and make the exit code 1.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, child_env

from fabric import MemoryFabric
from fabric.model import MemoryRecord

SAMPLES = ROOT / "tools" / "peers" / "seed_samples"
MANIFEST: dict[str, Any] = json.loads((SAMPLES / "manifest.json").read_text(encoding="utf-8"))
KEY = MANIFEST["encryption"]["passphrase"]


def fabric_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabric.cli", *args], capture_output=True, text=True, timeout=120,
                          env=env or child_env())


def run_import(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    out = fabric_cli("import", *args, "--json", env=env)
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}, out.stderr


def records(d: Path) -> dict[str, MemoryRecord]:
    with MemoryFabric(config={"data_dir": str(d)}) as f:
        return {r.id: r for r in f.list_all()}


def sample(tmp_path: Path, kind: str) -> Path:
    dst = tmp_path / "seed" / kind
    shutil.copytree(SAMPLES / kind, dst)
    return dst


def newest_versions(folder: Path) -> dict[str, dict[str, Any]]:
    """The latest-timestamp line of each id in a folder of run files (what the merge rule must pick)."""
    best: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("memory_run_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            obj = json.loads(line)
            have = best.get(obj["id"])
            if have is None or obj["timestamp"] >= have["timestamp"]:
                best[obj["id"]] = obj
    return best


def test_local_jsonl_samples(tmp_path: Path) -> None:
    seed = sample(tmp_path, "local_jsonl")
    target = tmp_path / "fabric"
    code, report, err = run_import("--from-seed", str(seed), "--data-dir", str(target), "--key", KEY)
    assert code == 0, err
    expected = MANIFEST["local_jsonl"]
    got = records(target)
    assert sorted(got) == expected["expected_live_ids"] and report["imported"] == len(got)
    newest = newest_versions(seed)
    for rid, content in expected["expected_content"].items():
        # An id written more than once gets its newest line: the samples' run1 file ends with a newer
        # mem-a line (same timestamp as the S3 run's mem-a), so there the newest is not the manifest's guess.
        if newest[rid]["content"] != content and "encryption_mode" not in newest[rid]["metadata"]:
            content = newest[rid]["content"]
        assert got[rid].content == content, rid
        assert got[rid].timestamp == datetime.fromisoformat(newest[rid]["timestamp"])  # the seed's time, kept
    for rec in got.values():
        assert not {"tiering_4d", "encryption_mode", "timestamp", "memory_type"} & set(rec.metadata), rec.metadata
    assert got["mem-b"].metadata["due"] == "2025-01-03 09:30:00+00:00" and got["mem-b"].content.endswith("☕")
    assert got["mem-c"].embedding is not None and got["mem-c"].embedding.vector == [0.125, -0.5, 0.25, 1.0]
    assert got["mem-c"].embedding.model == "demo-hash-4" and got["mem-c"].memory_type.value == "context"
    assert got["mem-e"].access_count == 1 and got["mem-e"].last_accessed is not None
    assert report["decrypted"] == 2 and report["plaintext_under_marker"] == 1
    assert any("mem-i" in n or "plaintext" in n for n in report["notes"])
    assert not set(expected["gone"]) & set(got)
    assert {s["kind"] for s in report["sources"]} == {"local_jsonl"} and report["skipped"] == []


def test_sqlite_sample(tmp_path: Path) -> None:
    seed = sample(tmp_path, "sqlite")
    before = (seed / MANIFEST["sqlite"]["db_file"]).read_bytes()
    target = tmp_path / "fabric"
    code, report, err = run_import("--from-seed", str(seed), "-d", str(target), "--key", KEY, "--backend", "sqlite")
    assert code == 0, err
    got = records(target)
    assert sorted(got) == MANIFEST["sqlite"]["expected_live_ids"]
    assert {rid: got[rid].content for rid in got} == MANIFEST["sqlite"]["expected_content"]
    assert got["mem-b"].access_count == 2  # sqlite writes reads back; the import keeps them
    assert report["decrypted"] == 1 and report["sources"][0]["rows"] == MANIFEST["sqlite"]["diagnostics"][
        "memory_records"]
    assert (seed / MANIFEST["sqlite"]["db_file"]).read_bytes() == before  # the seed's file is untouched
    with MemoryFabric(backend="sqlite", config={"data_dir": str(target)}) as f:
        assert [r.id for r in f.search("vegetarian")] == []  # the seed's stale FTS rows are not carried over
        assert [r.id for r in f.search("vegan")] == ["mem-a"]


def test_s3_objects_from_a_local_directory(tmp_path: Path) -> None:
    seed = sample(tmp_path, "s3")
    target = tmp_path / "fabric"
    code, report, err = run_import("--from-seed", str(seed / MANIFEST["s3"]["bucket"]), "-d", str(target),
                                   "--key", KEY)
    assert code == 0, err
    got = records(target)
    assert sorted(got) == MANIFEST["s3"]["expected_live_ids"]
    assert got["mem-g"].content == "Secret: the door code is 4711."
    assert got["mem-a"].access_count == 1  # S3 re-PUTs a record on read
    assert {s["kind"] for s in report["sources"]} == {"s3"}


def test_everything_at_once_merges_by_id(tmp_path: Path) -> None:
    seeds = [sample(tmp_path, kind) for kind in ("local_jsonl", "sqlite", "s3")]
    target = tmp_path / "fabric"
    args = [a for s in seeds for a in ("--from-seed", str(s))]
    code, report, err = run_import(*args, "-d", str(target), "--key", KEY)
    assert code == 0, err
    ids = set(MANIFEST["local_jsonl"]["expected_live_ids"]) | set(MANIFEST["sqlite"]["expected_live_ids"]) | set(
        MANIFEST["s3"]["expected_live_ids"])
    got = records(target)
    assert set(got) == ids and report["records"] == len(ids)
    assert report["rows"] > report["records"]  # versions of one id were merged
    again_code, again, _ = run_import(*args, "-d", str(target), "--key", KEY)  # a re-run resumes: nothing new
    assert again_code == 0 and again["imported"] == 0 and again["already_present"] == len(ids)
    assert len(records(target)) == len(ids)


def test_encrypted_rows_without_the_key_are_reported_not_imported(tmp_path: Path) -> None:
    seed = sample(tmp_path, "local_jsonl")
    target = tmp_path / "fabric"
    code, report, err = run_import("--from-seed", str(seed), "-d", str(target))
    assert code == 1
    skipped = {p["id"]: p for p in report["skipped"]}
    assert set(skipped) == {"mem-g", "mem-h"}
    run3 = MANIFEST["local_jsonl"]["run_files"]["run3"]
    assert skipped["mem-g"]["where"].endswith(f"{run3}:1 (byte 0)") and "--key" in skipped["mem-g"]["reason"]
    got = records(target)
    assert "mem-g" not in got and "mem-a" in got and got["mem-i"].content.startswith("Secret three")
    human = fabric_cli("import", "--from-seed", str(seed), "-d", str(tmp_path / "other"))
    assert human.returncode == 1 and "NOT imported" in human.stderr and run3 in human.stderr
    wrong_code, wrong, _ = run_import("--from-seed", str(seed), "-d", str(tmp_path / "w"), "--key", "not it")
    assert wrong_code == 1 and {p["id"] for p in wrong["skipped"]} == {"mem-g", "mem-h"}
    assert all("does not decrypt" in p["reason"] for p in wrong["skipped"])


def _broken_run_file(folder: Path) -> Path:
    good = json.loads((SAMPLES / "local_jsonl" / MANIFEST["local_jsonl"]["run_files"]["run2"]).read_text())
    lines = [
        json.dumps({**good, "id": "ok-1", "content": "fine"}),
        '{"id": "bad-json", "content": "oops", ',
        json.dumps({**good, "id": "bad-enum", "memory_type": "dream"}),
        json.dumps({**good, "id": "bad/id"}),
        json.dumps({**good, "id": "ok-2", "content": "also fine"}),
        json.dumps({**good, "id": "torn", "content": "cut"})[:40],  # no newline: a torn last line
    ]
    path = folder / "memory_run_0badc0de.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_broken_rows_are_listed_with_their_location(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    path = _broken_run_file(seed)
    db = seed / "memory_run_feedf00d.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE memory_records (id TEXT PRIMARY KEY, content TEXT NOT NULL, metadata TEXT, "
                "timestamp TEXT NOT NULL, tags TEXT, storage_tier TEXT NOT NULL, memory_type TEXT NOT NULL, "
                "access_count INTEGER DEFAULT 0, last_accessed TEXT, embedding TEXT, schema_version TEXT NOT NULL)")
    con.execute("INSERT INTO memory_records VALUES ('sql-ok', 'x', '{}', '2025-01-01T00:00:00+00:00', '[]', 'hot', "
                "'knowledge', 0, NULL, NULL, '1.0')")
    con.execute("INSERT INTO memory_records VALUES ('sql-bad', 'x', '{}', '2025-01-01T00:00:00+00:00', '[]', "
                "'lukewarm',"
                " 'knowledge', 0, NULL, NULL, '1.0')")
    con.execute("INSERT INTO memory_records VALUES ('sql-meta', 'x', 'not json', '2025-01-01', '[]', 'hot',"
                " 'knowledge', 0, NULL, NULL, '1.0')")
    con.commit()
    con.close()
    target = tmp_path / "fabric"
    code, report, err = run_import("--from-seed", str(seed), "-d", str(target))
    assert code == 1
    where = {p["where"]: p for p in report["skipped"]}
    assert f"{path}:2 (byte {len(path.read_text().splitlines()[0]) + 1})" in where
    assert "not valid JSON" in where[next(w for w in where if w.startswith(f"{path}:2"))]["reason"]
    bad_enum = next(p for p in report["skipped"] if p["id"] == "bad-enum")
    assert bad_enum["where"].startswith(f"{path}:3 ") and "dream" in bad_enum["reason"]
    assert next(p for p in report["skipped"] if p["id"] == "bad/id")["where"].startswith(f"{path}:4 ")
    torn = next(p for p in report["skipped"] if p["where"].startswith(f"{path}:6 "))
    assert "torn" in torn["reason"]
    assert f"{db}#rowid 2" in where and "lukewarm" in where[f"{db}#rowid 2"]["reason"]
    assert f"{db}#rowid 3" in where and "metadata" in where[f"{db}#rowid 3"]["reason"]
    assert len(report["skipped"]) == 6
    assert sorted(records(target)) == ["ok-1", "ok-2", "sql-ok"]  # the rest went in

    strict = fabric_cli("import", "--from-seed", str(seed), "-d", str(tmp_path / "strict"), "--strict")
    assert strict.returncode == 1 and f"{path}:2" in strict.stderr
    assert records(tmp_path / "strict") == {}  # nothing written


def test_a_record_whose_newest_version_is_unreadable_is_withheld(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.mkdir()
    good = json.loads((SAMPLES / "local_jsonl" / MANIFEST["local_jsonl"]["run_files"]["run2"]).read_text())
    old = {**good, "id": "dup", "content": "old", "timestamp": "2025-01-01T00:00:00+00:00"}
    new = {**good, "id": "dup", "content": "new", "timestamp": "2025-06-01T00:00:00+00:00", "storage_tier": "x"}
    (seed / "memory_run_00000001.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    code, report, _ = run_import("--from-seed", str(seed), "-d", str(tmp_path / "f"))
    assert code == 1 and "dup" not in records(tmp_path / "f")
    assert [p["id"] for p in report["skipped"]] == ["dup", "dup"]
    assert "newer version" in report["skipped"][1]["reason"]


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    seed = sample(tmp_path, "sqlite")
    target = tmp_path / "fabric"
    code, report, _ = run_import("--from-seed", str(seed), "-d", str(target), "--key", KEY, "--dry-run")
    assert code == 0 and report["dry_run"] and report["imported"] == 5
    assert not target.exists()


def test_import_usage_errors(tmp_path: Path) -> None:
    nothing = fabric_cli("import", "-d", str(tmp_path / "f"))
    assert nothing.returncode == 2 and "--from-seed" in nothing.stderr
    missing = fabric_cli("import", "--from-seed", str(tmp_path / "nope"), "-d", str(tmp_path / "f"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    same = fabric_cli("import", "--from-seed", str(tmp_path), "-d", str(tmp_path))
    assert same.returncode == 2
    unknown = fabric_cli("import", "--from-seed", str(tmp_path), "-d", str(tmp_path / "f"), "--backend", "redis")
    assert unknown.returncode == 2 and "unknown backend" in unknown.stderr


def test_import_from_an_s3_bucket(s3_env: dict[str, str], s3_bucket: str, tmp_path: Path) -> None:
    from fabric.objectstore import S3ObjectStore

    store = S3ObjectStore(s3_bucket, "")
    objects = SAMPLES / "s3" / MANIFEST["s3"]["bucket"]
    for path in objects.rglob("*.json"):
        store.put(path.relative_to(objects).as_posix(), path.read_bytes())
    store.put("other/prefix/not-ours.json", b"{}")
    store.close()
    target = tmp_path / "fabric"
    code, report, err = run_import("--s3-bucket", s3_bucket, "--s3-prefix", MANIFEST["s3"]["prefix"], "-d",
                                   str(target), "--key", KEY, env=s3_env)
    assert code == 0, err
    assert sorted(records(target)) == MANIFEST["s3"]["expected_live_ids"]
    assert all(s["where"].startswith(f"s3://{s3_bucket}/{MANIFEST['s3']['prefix']}") for s in report["sources"])


@pytest.mark.parametrize("name", ["memory_run_00000000000000000001.jsonl"])
def test_our_own_segments_are_not_mistaken_for_seed_files(tmp_path: Path, name: str) -> None:
    d = tmp_path / "ours"
    with MemoryFabric(config={"data_dir": str(d)}) as f:
        f.store("ours")
    assert (d / name).exists()
    code, report, _ = run_import("--from-seed", str(d), "-d", str(tmp_path / "f"))
    assert code == 0 and report["records"] == 0 and any("not a seed store" in n for n in report["notes"])
