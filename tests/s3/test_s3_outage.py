"""S3 going away mid-stream: writes stay local, reads keep working, the lag shows, and shipping
catches up by itself. Outages are real (the server stopped or frozen) or injected (500s,
throttling, timeouts, lost responses inside botocore; failures past retries above the store)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s3_server import S3Server

from fabric.errors import StorageUnavailableError
from fabric.fabric import MemoryFabric
from fabric.migrate import store_digests
from fabric.objectstore import FaultInjectingStore, S3ObjectStore
from fabric.s3_layout import parse_record_key
from fabric.s3_restore import restore

FabricFactory = Callable[..., MemoryFabric]


def s3_view(fabric: MemoryFabric) -> dict[str, Any]:
    view: dict[str, Any] = fabric.get_stats()["views"]["s3"]
    return view


def assert_bucket_matches(fabric: MemoryFabric, store: S3ObjectStore, tmp_path: Path, name: str) -> None:
    """Nothing lost: the records' objects are the live records, and a restore folds to the same state."""
    objects = {rid: k for k in store.list("") if (rid := parse_record_key(k)) is not None}
    assert set(objects) == {r.id for r in fabric.list_all()}
    for rec in fabric.list_all()[:20]:
        assert json.loads(store.get(objects[rec.id]))["content"] == rec.content
    restore(store, tmp_path / name, replica=True)
    copy = MemoryFabric(backend="s3", config={"data_dir": str(tmp_path / name), "bucket_name": "unused-bucket",
                                              "ship": False})
    try:
        assert store_digests(copy) == store_digests(fabric)
    finally:
        copy.close()


def test_a_stopped_server_delays_shipping_and_loses_nothing(
        make_fabric: FabricFactory, s3_server: S3Server, bucket_store: S3ObjectStore, tmp_path: Path,
        wait_for: Callable[..., None], shipped: Callable[..., None]) -> None:
    fabric = make_fabric()
    ids = fabric.store_many([{"content": f"before the outage {i}"} for i in range(20)])
    shipped(fabric)
    s3_server.stop()
    try:
        more = [fabric.store(f"during the outage {i}") for i in range(30)]
        fabric.update(ids[0], content="updated during the outage")
        fabric.delete(ids[1])
        assert fabric.retrieve(more[-1]) is not None
        assert [r.id for r in fabric.search("updated outage")] == [ids[0]]
        wait_for(lambda: s3_view(fabric)["state"] == "unreachable", what="the shipper to notice")
        view = s3_view(fabric)
        assert view["lag_events"] == fabric.log.last_seq - view["shipped_seq"] >= 32
        assert view["error"] and view["failures"] >= 1
        health = fabric.health_check()
        assert health["status"] == "degraded" and health["views"]["s3"]["behind"] > 0
    finally:
        s3_server.start()
    shipped(fabric)
    assert s3_view(fabric)["state"] == "ok" and fabric.health_check()["status"] == "healthy"
    assert_bucket_matches(fabric, bucket_store, tmp_path, "after-stop")


def test_a_frozen_server_is_waited_out(make_fabric: FabricFactory, s3_server: S3Server, bucket_store: S3ObjectStore,
                                       tmp_path: Path, wait_for: Callable[..., None],
                                       shipped: Callable[..., None]) -> None:
    fabric = make_fabric()
    fabric.store("before the freeze")
    shipped(fabric)
    with s3_server.paused():  # connections are accepted, nothing answers: timeouts, not refusals
        for i in range(25):
            fabric.store(f"while frozen {i}")
        assert fabric.count() == 26  # reads never wait for S3
        wait_for(lambda: s3_view(fabric)["state"] == "unreachable", timeout=30, what="timeouts to be noticed")
        assert fabric.health_check()["status"] == "degraded"
    shipped(fabric)
    assert_bucket_matches(fabric, bucket_store, tmp_path, "after-freeze")


def test_errors_inside_botocore_are_retried(make_fabric: FabricFactory, bucket_store: S3ObjectStore, tmp_path: Path,
                                            shipped: Callable[..., None]) -> None:
    fabric = make_fabric(retries=3)
    shipped(fabric)
    shipper = fabric.view.shipper
    assert isinstance(shipper.store, S3ObjectStore)
    shipper.store.inject_faults("500", 2)
    shipper.store.inject_faults("slowdown", 2, ops={"PutObject"})
    shipper.store.inject_faults("timeout", 1, ops={"GetObject"})
    shipper.store.inject_faults("lost-response", 1, ops={"PutObject"})  # a chunk lands; its answer is lost
    fabric.store_many([{"content": f"through the faults {i}"} for i in range(40)])
    fabric.store("and one more")
    shipped(fabric)
    assert shipper.store.faults_pending() == 0
    assert_bucket_matches(fabric, bucket_store, tmp_path, "after-faults")


def test_failures_past_the_retries_back_off_and_recover(make_fabric: FabricFactory, s3_config: dict[str, Any],
                                                        s3_server: S3Server, bucket_store: S3ObjectStore,
                                                        tmp_path: Path, wait_for: Callable[..., None],
                                                        shipped: Callable[..., None]) -> None:
    inner = S3ObjectStore(s3_config["bucket_name"], prefix=s3_config["prefix"], endpoint_url=s3_server.endpoint_url)
    flaky = FaultInjectingStore(inner)
    fabric = make_fabric(object_store=flaky)
    shipped(fabric)
    flaky.inject(StorageUnavailableError, 6, ops=["put_if_absent", "put"])
    ids = fabric.store_many([{"content": f"while the store fails {i}"} for i in range(10)])
    wait_for(lambda: s3_view(fabric)["failures"] >= 2, what="repeated failures")
    assert s3_view(fabric)["state"] == "unreachable" and fabric.retrieve(ids[3]) is not None
    shipped(fabric)
    assert flaky.pending == 0 and s3_view(fabric)["failures"] == 0
    assert_bucket_matches(fabric, bucket_store, tmp_path, "after-flaky")


def test_closing_while_the_server_is_down_is_quick_and_the_next_open_ships(
        make_fabric: FabricFactory, s3_server: S3Server, bucket_store: S3ObjectStore, tmp_path: Path,
        wait_for: Callable[..., None], shipped: Callable[..., None]) -> None:
    fabric = make_fabric("store")
    shipped(fabric)
    s3_server.stop()
    try:
        fabric.store_many([{"content": f"written offline {i}"} for i in range(15)])
        wait_for(lambda: s3_view(fabric)["state"] == "unreachable", what="the outage")
        fabric.close()  # bounded: does not wait for a store that does not answer
    finally:
        s3_server.start()
    again = make_fabric("store")
    assert again.count() == 15  # everything written offline is there; the backlog ships from the log
    shipped(again)
    assert s3_view(again)["lag_events"] == 0 and s3_view(again)["shipped_seq"] == again.log.last_seq
    assert_bucket_matches(again, bucket_store, tmp_path, "after-reopen")


def test_refused_credentials_are_reported_and_writes_go_on(make_fabric: FabricFactory, s3_config: dict[str, Any],
                                                           s3_server: S3Server,
                                                           wait_for: Callable[..., None]) -> None:
    denied = S3ObjectStore(s3_config["bucket_name"], prefix=s3_config["prefix"], endpoint_url=s3_server.endpoint_url,
                           access_key=s3_server.access_key, secret_key="not-the-secret", retries=0)
    fabric = make_fabric(object_store=denied)
    fabric.store("kept locally")
    wait_for(lambda: s3_view(fabric)["state"] == "denied", what="access denied")
    assert "credentials" in s3_view(fabric)["error"] or "Signature" in s3_view(fabric)["error"]
    assert fabric.health_check()["status"] == "degraded" and fabric.count() == 1


def test_a_wiped_prefix_is_shipped_again_from_the_start(make_fabric: FabricFactory, bucket_store: S3ObjectStore,
                                                        tmp_path: Path, shipped: Callable[..., None]) -> None:
    fabric = make_fabric()
    fabric.store_many([{"content": f"shipped once {i}"} for i in range(30)])
    shipped(fabric)
    for key in list(bucket_store.list("")):  # a lifecycle rule, a cleanup script, a new bucket under the name
        bucket_store.delete(key)
    fabric.store("written after the wipe")
    shipped(fabric)
    assert s3_view(fabric)["state"] == "ok"
    assert_bucket_matches(fabric, bucket_store, tmp_path, "after-wipe")
