"""Shared fixtures. The S3 server is real (SeaweedFS ``weed mini``); it fails, never skips."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from s3_server import S3Server, delete_bucket, new_bucket


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One ``weed mini`` for the whole run (~1 s to start), on free loopback ports."""
    server = S3Server()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh, empty bucket for one test; deleted with its contents afterwards."""
    if not s3_server.running:  # an earlier test stopped it and failed before restarting
        s3_server.start()
    bucket = new_bucket(s3_server)
    yield bucket
    if s3_server.running:  # a test may leave the server stopped; then there is nothing to clean
        with contextlib.suppress(Exception):
            delete_bucket(s3_server, bucket)


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point AWS SDKs at the test server: set in this process, returned whole for subprocesses.

    Use as ``subprocess.run(..., env=s3_env)``; in-process code sees the same variables.
    """
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)
