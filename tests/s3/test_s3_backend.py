"""The s3 backend against a real S3 server: what reaches the bucket, and what reads never do."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from s3_server import S3Server

from fabric.fabric import MemoryFabric
from fabric.log import segment_name
from fabric.objectstore import FaultInjectingStore, S3ObjectStore
from fabric.s3_layout import ChunkName, checkpoint_key, parse_log_key, parse_record_key, record_key
from fabric.s3_restore import list_streams

FabricFactory = Callable[..., MemoryFabric]


def record_objects(store: S3ObjectStore) -> dict[str, dict[str, Any]]:
    out = {}
    for key in store.list(""):
        rid = parse_record_key(key)
        if rid is not None:
            out[rid] = json.loads(store.get(key))
    return out


def chunks(store: S3ObjectStore) -> list[ChunkName]:
    return sorted((n for n in map(parse_log_key, store.list("log/")) if isinstance(n, ChunkName)),
                  key=lambda c: c.first)


def test_records_reach_the_bucket_as_the_seeds_objects(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                       shipped: Callable[..., None]) -> None:
    fabric = make_fabric()
    a = fabric.store("Dana is allergic to peanuts", {"user": "dana", "n": 1}, ["health"], "knowledge")
    b = fabric.store("Dana prefers dark mode", {"user": "dana"}, ["prefs"], embedding=[0.5, 0.25])
    c = fabric.store("to be deleted")
    d = fabric.store("to be forgotten")
    fabric.update(a, tags=["health", "allergy"], storage_tier="cold")
    fabric.delete(c)
    fabric.forget(d)
    fabric.retrieve(b)
    fabric.flush()  # writes the access count
    shipped(fabric)
    objects = record_objects(bucket_store)
    assert set(objects) == {a, b}
    body = objects[a]
    assert list(body) == ["id", "content", "metadata", "timestamp", "tags", "storage_tier", "memory_type",
                          "access_count", "last_accessed", "embedding", "__schema_version__"]
    public = fabric.retrieve(a)
    assert public is not None
    assert body["content"] == "Dana is allergic to peanuts" and body["metadata"] == {"user": "dana", "n": 1}
    assert body["tags"] == ["health", "allergy"] and body["storage_tier"] == "cold"
    assert body["memory_type"] == "knowledge" and body["timestamp"] == public.timestamp.isoformat()
    assert objects[b]["access_count"] == 1 and objects[b]["last_accessed"] is not None
    assert objects[b]["embedding"] == {"vector": [0.5, 0.25], "model": "", "dimension": 2, "__schema_version__": "1.0"}


def test_the_log_ships_in_few_chunks_byte_for_byte(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                   shipped: Callable[..., None]) -> None:
    fabric = make_fabric()
    fabric.store_many([{"content": f"bulk record {i}", "tags": ["bulk"]} for i in range(1000)])
    for i in range(100):
        fabric.store(f"single record {i}")
    shipped(fabric)
    last = fabric.log.last_seq
    names = chunks(bucket_store)
    assert names[0].first == 1 and names[-1].last == last
    assert all(x.last + 1 == y.first for x, y in zip(names, names[1:], strict=False))  # a gapless chain
    assert len(names) < 50, "a chunk holds many lines: far fewer requests than one per record"
    shipped_bytes = b"".join(bucket_store.get(f"log/{n.writer}/{n.segment:020d}/{n.first:020d}-{n.last:020d}.jsonl")
                             for n in names)
    assert shipped_bytes == (Path(fabric.data_dir) / segment_name(1)).read_bytes()
    ckpt = json.loads(bucket_store.get(checkpoint_key(names[0].writer)))
    assert ckpt["log_seq"] == last and ckpt["records_seq"] == last and ckpt["log_id"] == names[0].writer
    stats = fabric.get_stats()["views"]["s3"]
    assert stats["state"] == "ok" and stats["shipped_seq"] == last and stats["lag_events"] == 0
    assert stats["requests"]["chunk_puts"] == len(names) and stats["requests"]["record_puts"] == 1100
    assert fabric.health_check()["status"] == "healthy"


def test_record_objects_are_coalesced_to_the_latest_state(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                          shipped: Callable[..., None]) -> None:
    offline = make_fabric(ship=False)  # all writes first, then one shipper sees them together
    ids = offline.store_many([{"content": f"draft {i}"} for i in range(100)])
    for round_ in range(4):
        for rid in ids:
            offline.update(rid, content=f"version {round_} of {rid}")
    for rid in ids[:10]:
        offline.delete(rid)
    offline.close()
    fabric = make_fabric()
    shipped(fabric)
    requests = fabric.get_stats()["views"]["s3"]["requests"]
    assert requests["record_puts"] == 90 and requests["record_deletes"] == 10  # 500 changes, one request per id
    objects = record_objects(bucket_store)
    assert {rid: o["content"] for rid, o in objects.items()} == {rid: f"version 3 of {rid}" for rid in ids[10:]}


def test_reads_and_search_never_touch_the_bucket(make_fabric: FabricFactory, s3_config: dict[str, Any],
                                                 s3_server: S3Server, shipped: Callable[..., None]) -> None:
    inner = S3ObjectStore(s3_config["bucket_name"], prefix=s3_config["prefix"], endpoint_url=s3_server.endpoint_url)
    spy = FaultInjectingStore(inner)
    fabric = make_fabric(object_store=spy)
    fabric.store_many([{"content": f"quick brown fox number {i}", "tags": ["fox"]} for i in range(50)])
    shipped(fabric)
    before = list(spy.calls)
    assert len(fabric.search("quick fox", limit=5)) == 5
    assert len(fabric.search("", tags=["fox"], limit=100)) == 50
    assert len(fabric.list_all()) == 50 and fabric.count() == 50
    fabric.get_stats()
    assert spy.calls == before


def test_env_vars_configure_the_backend_and_the_seed_fallback_dir(
        s3_config: dict[str, Any], bucket_store: S3ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        shipped: Callable[..., None]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IOA_FABRIC_BACKEND", "s3")
    monkeypatch.setenv("IOA_FABRIC_S3_BUCKET", s3_config["bucket_name"])
    monkeypatch.setenv("IOA_FABRIC_S3_PREFIX", s3_config["prefix"].rstrip("/"))
    monkeypatch.setenv("IOA_FABRIC_WRITER", "laptop-1")
    options = {k: v for k, v in s3_config.items() if k not in ("bucket_name", "prefix")}
    with MemoryFabric(config=options) as fabric:
        rid = fabric.store("configured by the environment")
        shipped(fabric)
        assert fabric.backend_name == "s3"
        assert Path(fabric.data_dir) == Path("artifacts/memory/s3_fallback")
        assert (tmp_path / "artifacts/memory/s3_fallback" / segment_name(1)).is_file()
        assert fabric.get_stats()["views"]["s3"]["writer"] == "laptop-1"
    assert bucket_store.get(record_key(rid))
    assert set(list_streams(bucket_store)) == {"laptop-1"}


def test_many_chunks_list_past_one_page(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                        shipped: Callable[..., None]) -> None:
    fabric = make_fabric(ship=False)
    for i in range(1100):
        fabric.store(f"record {i}")
    fabric.close()
    fabric = make_fabric(chunk_bytes=1, record_objects=False)  # every batch its own chunk
    shipped(fabric)
    streams = list_streams(bucket_store)
    (info,) = streams.values()
    assert len(info.chunks) == 1101 and info.checkpoint is not None and info.checkpoint.log_seq == 1101


def test_one_process_ships_per_data_dir_the_others_stand_by(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                            wait_for: Callable[..., None],
                                                            shipped: Callable[..., None]) -> None:
    first = make_fabric("shared")
    second = make_fabric("shared")
    wait_for(lambda: second.get_stats()["views"]["s3"]["state"] == "standby", what="second to stand by")
    rid = second.store("written by the second handle")
    shipped(first)  # the active shipper picks up what the other handle appended
    assert bucket_store.get(record_key(rid))
    first.close()
    other = second.store("after the first handle closed")
    shipped(second)  # the standby took over
    assert bucket_store.get(record_key(other))
    assert second.get_stats()["views"]["s3"]["state"] == "ok"


def test_the_sqlite_view_can_serve_reads(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                         shipped: Callable[..., None]) -> None:
    fabric = make_fabric(local_view="sqlite")
    ids = fabric.store_many([{"content": f"sqlite served {i}"} for i in range(20)])
    fabric.update(ids[0], content="changed in place")
    assert [r.id for r in fabric.search("changed")] == [ids[0]]
    shipped(fabric)
    assert json.loads(bucket_store.get(record_key(ids[0])))["content"] == "changed in place"
    assert fabric.get_stats()["views"]["s3"]["local_view"] == "sqlite"
    assert (Path(fabric.data_dir) / "fabric.db").is_file()
