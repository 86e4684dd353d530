"""Fixtures for the s3 backend's tests: a fabric on the real server, a fresh prefix per test, fast timings.

The server is the session's SeaweedFS (`tests/conftest.py`); each test gets its own bucket
and, inside it, its own random prefix. Shipping options are turned down (short intervals,
short timeouts, quick backoff) so outages and catch-ups happen in well under a second.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_server import S3Server

from fabric.fabric import MemoryFabric
from fabric.objectstore import S3ObjectStore

#: Shipping and S3 client options for tests: outages are noticed and retried quickly.
FAST: dict[str, Any] = {
    "durability": "none",
    "ship_interval": 0.02,
    "poll_interval": 0.1,
    "min_backoff": 0.05,
    "max_backoff": 0.3,
    "request_timeout": 1.0,
    "retries": 1,
    "max_elapsed": 2.0,
    "close_timeout": 5.0,
}


@pytest.fixture
def s3_prefix() -> str:
    return f"t-{secrets.token_hex(6)}/mem/"


@pytest.fixture
def s3_config(s3_server: S3Server, s3_bucket: str, s3_env: dict[str, str], s3_prefix: str) -> dict[str, Any]:
    """Config for an s3-backed fabric on this test's bucket and prefix (the env points at the server)."""
    return {"bucket_name": s3_bucket, "prefix": s3_prefix, **FAST}


FabricFactory = Callable[..., MemoryFabric]


@pytest.fixture
def make_fabric(s3_config: dict[str, Any], tmp_path: Path) -> Iterator[FabricFactory]:
    """``make_fabric(name="a", key=None, **config)``: an s3 fabric on ``tmp_path/name``; closed after the test."""
    opened: list[MemoryFabric] = []

    def make(name: str = "a", key: str | None = None, **overrides: Any) -> MemoryFabric:
        config = {**s3_config, "data_dir": str(tmp_path / name), **overrides}
        fabric = MemoryFabric(backend="s3", config=config, encryption_key=key)
        opened.append(fabric)
        return fabric

    yield make
    for fabric in opened:
        fabric.close()


@pytest.fixture
def bucket_store(s3_server: S3Server, s3_bucket: str, s3_prefix: str) -> Iterator[S3ObjectStore]:
    """The test's prefix as an object store, to look at what reached the bucket."""
    store = S3ObjectStore(s3_bucket, prefix=s3_prefix, endpoint_url=s3_server.endpoint_url,
                          access_key=s3_server.access_key, secret_key=s3_server.secret_key, region=s3_server.region)
    yield store
    store.close()


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _shipped(fabric: MemoryFabric, timeout: float = 30.0, records: bool = True) -> None:
    assert fabric.view.wait_shipped(timeout, records=records), fabric.get_stats()["views"]["s3"]


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """``wait_for(predicate, timeout=20, what=...)``: poll until true; else fail naming ``what``.

    The timeout is a bound against hanging, not a timing assertion."""
    return _wait_for


@pytest.fixture
def shipped() -> Callable[..., None]:
    """``shipped(fabric, timeout=30, records=True)``: wait until everything in the fabric's log is in the bucket."""
    return _shipped
