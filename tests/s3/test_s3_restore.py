"""Restore from the bucket alone: byte-identical logs, verified chains, equal records; damage is loud."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fabric.errors import ChainBrokenError, ConfigurationError, StorageError
from fabric.fabric import MemoryFabric
from fabric.log import EventLog
from fabric.log_chunks import read_chunks
from fabric.migrate import combined_digest, store_digests
from fabric.objectstore import S3ObjectStore
from fabric.s3_layout import ChunkName, chunk_key, parse_log_key
from fabric.s3_restore import list_streams, restore

FabricFactory = Callable[..., MemoryFabric]
ROOT = Path(__file__).resolve().parents[2]


def segments(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.glob("memory_run_*.jsonl"))}


def chunk_names(store: S3ObjectStore) -> list[ChunkName]:
    return sorted((n for n in map(parse_log_key, store.list("log/")) if isinstance(n, ChunkName)),
                  key=lambda c: c.first)


def busy_store(fabric: MemoryFabric) -> None:
    ids = fabric.store_many([{"content": f"note {i} about topic {i % 7}", "tags": [f"t{i % 3}"],
                              "metadata": {"i": i}} for i in range(400)])
    for i, rid in enumerate(ids[:120]):
        fabric.update(rid, content=f"revised note {i}", metadata={"i": i, "rev": 2})
    for rid in ids[120:160]:
        fabric.delete(rid)
    for i in range(60):
        fabric.store(f"single {i}", embedding=[float(i), 1.0])
    fabric.retrieve(ids[200])
    fabric.flush()


def test_restore_rebuilds_a_byte_identical_log(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                               tmp_path: Path, shipped: Callable[..., None]) -> None:
    fabric = make_fabric(segment_bytes=16 * 1024)  # several segments
    busy_store(fabric)
    fabric.log.seal_segment()
    fabric.store("after an early seal")
    shipped(fabric)
    original = segments(Path(fabric.data_dir))
    digests = store_digests(fabric)
    assert len(original) > 3
    fabric.close()

    report = restore(bucket_store, tmp_path / "restored")
    assert segments(tmp_path / "restored") == original
    with EventLog(tmp_path / "restored", create=False) as log:
        assert log.verify().events == report.events
    copy = make_fabric("restored", ship=False)
    assert store_digests(copy) == digests
    assert [s.role for s in report.streams] == ["log"]


def test_a_restored_store_continues_as_the_writer(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                  tmp_path: Path, shipped: Callable[..., None]) -> None:
    first = make_fabric("first", writer="desk")
    ids = first.store_many([{"content": f"before {i}"} for i in range(30)])
    shipped(first)
    first.close()
    restore(bucket_store, tmp_path / "second")
    second = make_fabric("second")  # no writer given: the restored directory is "desk"
    assert second.count() == 30
    second.update(ids[0], content="after the move")
    rid = second.store("written on the new machine")
    shipped(second)
    assert set(list_streams(bucket_store)) == {"desk"}
    restore(bucket_store, tmp_path / "third")
    assert segments(tmp_path / "third") == segments(tmp_path / "second")
    third = make_fabric("third", ship=False)
    assert third.retrieve(rid) is not None and third.retrieve(ids[0]).content == "after the move"  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="ships as writer 'desk'"):
        make_fabric("third", writer="other")


def test_restore_cli_on_an_empty_machine(make_fabric: FabricFactory, s3_config: dict[str, Any], tmp_path: Path,
                                         s3_env: dict[str, str], shipped: Callable[..., None]) -> None:
    fabric = make_fabric()
    busy_store(fabric)
    shipped(fabric)
    digest, count = combined_digest(store_digests(fabric)), fabric.count()
    fabric.close()
    target = tmp_path / "empty-machine" / "store"
    out = subprocess.run([sys.executable, "-m", "fabric.cli", "restore", "--from", "s3", "--data-dir", str(target),
                          "--bucket", s3_config["bucket_name"], "--prefix", s3_config["prefix"], "--view", "sqlite",
                          "--json"], capture_output=True, text=True, env=s3_env, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["digest"] == digest and summary["records"] == count
    assert summary["verified_events"] == summary["events"] and (target / "fabric.db").is_file()


def test_restore_refuses_a_directory_that_is_not_empty(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                       tmp_path: Path, shipped: Callable[..., None]) -> None:
    fabric = make_fabric()
    fabric.store("x")
    shipped(fabric)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="not empty"):
        restore(bucket_store, tmp_path / "busy")
    assert os.listdir(tmp_path / "busy") == ["notes.txt"]


def test_a_missing_chunk_fails_and_leaves_nothing_behind(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                         tmp_path: Path, shipped: Callable[..., None]) -> None:
    fabric = make_fabric(record_objects=False)
    for i in range(5):
        fabric.store_many([{"content": f"batch {i} record {j}"} for j in range(20)])
        shipped(fabric)
    names = chunk_names(bucket_store)
    assert len(names) >= 3
    bucket_store.delete(chunk_key(*names[1]))
    with pytest.raises(StorageError, match="missing"):
        restore(bucket_store, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_tampered_chunk_is_detected(make_fabric: FabricFactory, bucket_store: S3ObjectStore, tmp_path: Path,
                                      shipped: Callable[..., None]) -> None:
    fabric = make_fabric(record_objects=False)
    fabric.store_many([{"content": f"honest record {j}"} for j in range(20)])
    shipped(fabric)
    (name,) = chunk_names(bucket_store)
    key = chunk_key(*name)
    bucket_store.put(key, bucket_store.get(key).replace(b"honest record 7", b"forged record 7"))
    with pytest.raises(ChainBrokenError, match="altered"):
        restore(bucket_store, tmp_path / "r")


def test_chunks_left_by_a_crash_before_the_checkpoint_are_adopted(make_fabric: FabricFactory,
                                                                  bucket_store: S3ObjectStore,
                                                                  shipped: Callable[..., None]) -> None:
    offline = make_fabric(ship=False)
    offline.store_many([{"content": f"r{i}"} for i in range(10)])
    stream = offline.log.writer
    last = offline.log.last_seq
    (chunk,) = read_chunks(offline.log, 1, last, max_bytes=1 << 30)
    offline.close()
    bucket_store.put(chunk_key(stream, 1, 1, last), chunk.data)  # a shipper died right after this PUT
    fabric = make_fabric()
    fabric.store("and one more")
    shipped(fabric)
    assert [(c.first, c.last) for c in chunk_names(bucket_store)] == [(1, last), (last + 1, last + 1)]
    assert fabric.get_stats()["views"]["s3"]["requests"]["chunk_puts"] == 1


def test_a_chunk_that_disagrees_with_the_log_stops_shipping(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                            wait_for: Callable[..., None]) -> None:
    offline = make_fabric(ship=False)
    offline.store("the real first record")
    stream, last = offline.log.writer, offline.log.last_seq
    offline.close()
    foreign = b'{"not": "our lines"}\n'
    bucket_store.put(chunk_key(stream, 1, 1, last), foreign)
    fabric = make_fabric()
    wait_for(lambda: fabric.get_stats()["views"]["s3"]["state"] == "conflict", what="conflict")
    assert bucket_store.get(chunk_key(stream, 1, 1, last)) == foreign  # nothing overwritten
    health = fabric.health_check()
    assert health["status"] == "degraded" and "diverged" in health["views"]["s3"]["error"]
    assert fabric.store("writes still work") and fabric.count() == 2
