"""Migration (a replay), rebuild and parity, through the library and the ``fabric`` CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from fabric.cli import main
from fabric.fabric import MemoryFabric
from fabric.migrate import migrate, parity, project, record_digest
from projections.sqlite_schema import DB_NAME


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.output, self.stderr = exit_code, stdout, stdout + stderr, stderr


@pytest.fixture
def cli(capfd: pytest.CaptureFixture[str]) -> Any:
    """Run ``fabric ARGS`` in this process through its real entry point (exit codes included)."""

    def run(*args: str) -> Result:
        capfd.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out, err = capfd.readouterr()
        return Result(code, out, err)

    return run


def make_store(path: Path, n: int = 300, seed: int = 1) -> None:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "café", "东京", "delta"]
    with MemoryFabric(config={"data_dir": str(path), "durability": "none"}) as f:
        f.store_many([{"content": " ".join(rng.choices(words, k=rng.randint(1, 9))), "record_id": f"m{i:04d}",
                       "tags": rng.sample(["a", "b", "c"], rng.randint(0, 2)), "metadata": {"i": i, "z": {"y": 1}},
                       "embedding": [0.1, 0.2] if i % 10 == 0 else None} for i in range(n)])
        for i in range(0, n, 9):
            f.update(f"m{i:04d}", content="rewritten alpha")
        for i in range(5, n, 13):
            f.delete(f"m{i:04d}")
        f.retrieve("m0001")


def test_digest_is_the_same_from_every_view(tmp_path: Path) -> None:
    make_store(tmp_path)
    with MemoryFabric(config={"data_dir": str(tmp_path)}) as a, \
            MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path)}) as b:
        da = [record_digest(r) for r in a.list_all()]
        db = [record_digest(r) for r in b.list_all()]
        assert da == db and len(set(da)) == len(da)
        assert parity(a, b).ok


def test_migrate_on_the_same_data_dir_is_a_replay(tmp_path: Path) -> None:
    make_store(tmp_path)
    report = migrate("local_jsonl", "sqlite", tmp_path)
    assert report.parity.ok and report.copied == 0 and report.replay is not None
    assert report.replay.position > 300
    again = migrate("local_jsonl", "sqlite", tmp_path)  # resumes from the checkpoint: nothing left to do
    assert again.parity.ok and again.replay is not None and again.replay.events == 0


def test_migrate_to_another_data_dir_copies_and_resumes(tmp_path: Path) -> None:
    make_store(tmp_path / "src")
    calls = 0

    def interrupt(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if done >= 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate("local_jsonl", "sqlite", tmp_path / "src", target_data_dir=tmp_path / "dst", progress=interrupt,
                batch=50)
    report = migrate("local_jsonl", "sqlite", tmp_path / "src", target_data_dir=tmp_path / "dst", batch=50)
    assert report.parity.ok, report.parity
    assert report.skipped >= 50 and report.copied + report.skipped == report.parity.source_count
    with MemoryFabric(config={"data_dir": str(tmp_path / "src")}) as a, \
            MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path / "dst")}) as b:
        assert [r.id for r in a.list_all()] == [r.id for r in b.list_all()]
        assert [h.record.id for h in a.search_hits("alpha", 20)] == [h.record.id for h in b.search_hits("alpha", 20)]


def test_cli_migrate_reports_parity(tmp_path: Path, cli: Any) -> None:
    make_store(tmp_path)
    res = cli("migrate", "--from", "local_jsonl", "--to", "sqlite", "--data-dir", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "parity OK" in res.output
    res = cli("migrate", "--from", "sqlite", "--to", "local_jsonl", "--data-dir", str(tmp_path), "--json")
    out = json.loads(res.stdout)
    assert res.exit_code == 0 and out["parity"]["ok"] and out["parity"]["source_count"] == out["parity"]["target_count"]


def test_cli_migrate_exits_1_on_mismatch(tmp_path: Path, cli: Any) -> None:
    make_store(tmp_path / "src")
    assert cli("migrate", "--from", "local_jsonl", "--to", "sqlite", "-d", str(tmp_path / "src"),
               "--target-data-dir", str(tmp_path / "dst")).exit_code == 0
    with MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path / "dst")}) as f:
        f.update("m0002", content="changed only in the target")
        f.store("only in the target", record_id="extra")
    res = cli("migrate", "--from", "local_jsonl", "--to", "sqlite", "-d", str(tmp_path / "src"),
              "--target-data-dir", str(tmp_path / "dst"), "--json")
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["parity"]["different"] == ["m0002"] and out["parity"]["extra"] == ["extra"]


def test_cli_migrate_rejects_nonsense(tmp_path: Path, cli: Any) -> None:
    make_store(tmp_path)
    assert cli("migrate", "--from", "local_jsonl", "--to", "nosuch", "-d", str(tmp_path)).exit_code == 2
    assert cli("migrate", "--from", "sqlite", "--to", "sqlite", "-d", str(tmp_path)).exit_code == 2


def test_cli_rebuild(tmp_path: Path, cli: Any) -> None:
    make_store(tmp_path)
    with MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path)}) as f:
        want = [(h.record.id, h.score) for h in f.search_hits("alpha beta", 30)]
    res = cli("rebuild", "--view", "sqlite", "--data-dir", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert "rebuilt the sqlite view" in res.output and "events/s" in res.output
    res = cli("rebuild", "--view", "sqlite", "--data-dir", str(tmp_path), "--json")
    out = json.loads(res.stdout)
    assert out["rebuilt"] and out["records"] > 0 and out["view_bytes"] > 0
    with MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path)}) as f:
        assert [(h.record.id, h.score) for h in f.search_hits("alpha beta", 30)] == want


def test_rebuild_is_safe_to_interrupt(tmp_path: Path) -> None:
    make_store(tmp_path, n=500)
    with MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path)}) as f:
        want = [(h.record.id, h.score) for h in f.search_hits("gamma", 30)]

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    import projections.sqlite_bulk as bulk

    with pytest.raises(KeyboardInterrupt):
        project(tmp_path, "sqlite", rebuild=True, progress=stop)
    assert not Path(f"{tmp_path / DB_NAME}.rebuild").exists()
    assert bulk.BATCH > 0
    with MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path)}) as f:
        assert [(h.record.id, h.score) for h in f.search_hits("gamma", 30)] == want
    report = project(tmp_path, "sqlite", rebuild=True)
    assert report.rebuilt and report.records == len(MemoryFabric(config={"data_dir": str(tmp_path)}).list_all())


def test_rebuild_of_a_missing_store_is_a_usage_error(tmp_path: Path, cli: Any) -> None:
    res = cli("rebuild", "--view", "sqlite", "--data-dir", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "does not exist" in res.stderr
