"""Many writers, one bucket: each ships its own stream with conditional puts; any machine folds them
all into the same state, whatever order it reads them in."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fabric.log
import fabric.streams
from fabric.codec import PlainCodec
from fabric.fabric import MemoryFabric
from fabric.log import EventLog
from fabric.migrate import store_digests
from fabric.objectstore import S3ObjectStore
from fabric.s3_layout import ChunkName, parse_log_key
from fabric.s3_restore import list_streams, replica_dirs, restore
from fabric.state import Record, fold, merge_order

FabricFactory = Callable[..., MemoryFabric]
ROOT = Path(__file__).resolve().parents[2]

WRITER = r"""
import json, sys
from fabric import MemoryFabric
config = json.loads(sys.argv[1])
w = config["writer"]
with MemoryFabric(backend="s3", config=config) as f:
    f.store_many([{"content": f"{w} note {i}", "record_id": f"{w}-{i}", "tags": [w]} for i in range(200)])
    for i in range(0, 200, 10):
        f.update(f"{w}-{i}", content=f"{w} note {i}, revised")
    for i in range(1, 200, 25):
        f.delete(f"{w}-{i}")
    f.store(f"the shared note, as {w} wrote it", record_id="shared")
    f.update("shared", tags=[w, "shared"])
    assert f.view.wait_shipped(60), f.get_stats()["views"]["s3"]
"""


def expected_state(dirs: dict[str, Path]) -> dict[str, Record]:
    """The fold of every stream's events by merge order: computed here from the raw logs, independently."""
    keyed = []
    codec = PlainCodec()
    for stream, path in dirs.items():
        with EventLog(path, create=False) as log:
            for env in log.read(1):
                if env.id:
                    ch = codec.decode(env)
                    key = (*merge_order(env.ts, env.writer, env.seq), stream)
                    keyed.append((key, (ch.id, ch.seq, ch.ts, ch.event)))
    keyed.sort(key=lambda item: item[0])
    return fold(event for _key, event in keyed)


def visible(records: dict[str, Record] | list[Any]) -> dict[str, tuple[str, bytes, tuple[str, ...]]]:
    items = records.values() if isinstance(records, dict) else records
    return {r.id: (r.content, r.metadata, tuple(r.tags)) for r in items}


def test_two_processes_ship_and_a_third_folds_both_in_any_order(
        s3_config: dict[str, Any], s3_env: dict[str, str], bucket_store: S3ObjectStore, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", WRITER,
                               json.dumps({**s3_config, "data_dir": str(tmp_path / w), "writer": w})],
                              env=s3_env, cwd=ROOT, stderr=subprocess.PIPE, text=True) for w in ("alpha", "beta")]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    streams = list_streams(bucket_store)
    assert set(streams) == {"alpha", "beta"}
    assert all(isinstance(n, ChunkName) or n is None or n.writer in ("alpha", "beta")
               for n in map(parse_log_key, bucket_store.list("log/")))

    report = restore(bucket_store, tmp_path / "third")  # two streams: both become replicas
    assert sorted((s.writer, s.role) for s in report.streams) == [("alpha", "replica"), ("beta", "replica")]
    assert [w for w, _ in replica_dirs(tmp_path / "third")] == ["alpha", "beta"]
    want = expected_state(dict(replica_dirs(tmp_path / "third")))
    assert len(want) == 2 * (200 - 8) + 1

    config = {**s3_config, "ship": False}
    third = MemoryFabric(backend="s3", config={**config, "data_dir": str(tmp_path / "third")})
    try:
        assert visible(third.view.list(None, 0)) == visible(want)
        digests = store_digests(third)
        assert sorted(third.retrieve("shared").tags) in (["alpha", "shared"], ["beta", "shared"])  # type: ignore[union-attr]
    finally:
        third.close()

    # read the streams the other way round: the same state
    monkeypatch.setattr(fabric.streams, "replica_dirs", lambda d: list(reversed(replica_dirs(d))))
    reversed_streams = dict(reversed(list(list_streams(bucket_store).items())))
    restore(bucket_store, tmp_path / "fourth", streams=reversed_streams)
    fourth = MemoryFabric(backend="s3", config={**config, "data_dir": str(tmp_path / "fourth")})
    try:
        assert store_digests(fourth) == digests
    finally:
        fourth.close()


def test_a_writer_id_taken_by_another_data_dir_is_refused(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                          wait_for: Callable[..., None],
                                                          shipped: Callable[..., None]) -> None:
    first = make_fabric("first", writer="kiosk")
    first.store("the first kiosk's record")
    shipped(first)
    before = {k: bucket_store.get(k) for k in bucket_store.list("log/")}
    second = make_fabric("second", writer="kiosk")
    second.store("the second kiosk's record")
    wait_for(lambda: second.get_stats()["views"]["s3"]["state"] == "conflict", what="the conflict")
    assert "already used by another store" in second.get_stats()["views"]["s3"]["error"]
    assert {k: bucket_store.get(k) for k in bucket_store.list("log/")} == before  # nothing overwritten
    assert second.count() == 1 and second.health_check()["status"] == "degraded"


def test_a_restored_store_can_continue_one_writer_and_fold_the_other(
        make_fabric: FabricFactory, bucket_store: S3ObjectStore, tmp_path: Path,
        shipped: Callable[..., None]) -> None:
    a, b = make_fabric("a", writer="a"), make_fabric("b", writer="b")
    a.store("from a", record_id="ra")
    b.store("from b", record_id="rb")
    shipped(a)
    shipped(b)
    a.close()
    restore(bucket_store, tmp_path / "a2", writer="a")
    assert sorted(p.name for p in (tmp_path / "a2").glob("memory_run_*")) == \
        sorted(p.name for p in (tmp_path / "a").glob("memory_run_*"))
    a2 = make_fabric("a2")
    assert a2.get_stats()["views"]["s3"]["writer"] == "a"
    assert {r.id for r in a2.list_all()} == {"ra", "rb"}
    a2.update("rb", content="from b, edited on a2")
    shipped(a2)
    restore(bucket_store, tmp_path / "c")
    c = make_fabric("c", ship=False)
    assert c.retrieve("rb").content == "from b, edited on a2"  # type: ignore[union-attr]


def test_a_foreign_event_from_a_clock_ahead_keeps_merge_order(make_fabric: FabricFactory, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ahead = tmp_path / "ahead"
    real_now = fabric.log._now_us
    monkeypatch.setattr(fabric.log, "_now_us", lambda: real_now() + 3_600_000_000)  # an hour ahead
    with MemoryFabric(config={"data_dir": str(ahead), "writer": "ahead", "durability": "none"}) as other:
        other.store("written an hour ahead", record_id="same", tags=["ahead"])
        other.store("also ahead", record_id="gone-later")
    monkeypatch.setattr(fabric.log, "_now_us", real_now)
    replica = tmp_path / "local" / "streams" / "ahead"
    replica.mkdir(parents=True)
    for seg in ahead.glob("memory_run_*.jsonl"):
        (replica / seg.name).write_bytes(seg.read_bytes())

    local = make_fabric("local", ship=False, writer="local")
    assert local.retrieve("same").content == "written an hour ahead"  # type: ignore[union-attr]
    local.update("same", content="edited now, but earlier than the other clock")
    local.delete("gone-later")
    time.sleep(0.01)
    # merge order: our edit and delete come BEFORE the other writer's stores, which therefore win
    want = expected_state({"local": Path(local.data_dir), "ahead": replica})
    assert visible(local.view.list(None, 0)) == visible(want)
    assert local.retrieve("same").content == "written an hour ahead"  # type: ignore[union-attr]
    assert local.retrieve("gone-later") is not None
    reopened = make_fabric("local", ship=False, writer="local")  # a cold fold agrees with the live one
    assert visible(reopened.view.list(None, 0)) == visible(want)
