"""`fabric.objectstore` against a real S3 server (SeaweedFS) and in memory.

One body per case, run on both backends (`store` fixture), Litestream-style; then what
only S3 has: credentials, missing buckets, outages, retries (faults injected inside
botocore, so the real retry code meets the real server).
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from s3_server import S3Server, client

from fabric.errors import (
    InvalidInputError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)
from fabric.objectstore import (
    FaultInjectingStore,
    FaultKind,
    MemoryObjectStore,
    ObjectStore,
    S3ObjectStore,
)

ROOT = Path(__file__).resolve().parents[2]


def s3_store(server: S3Server, bucket: str, **kwargs: object) -> S3ObjectStore:
    """A store on `server` under a fresh random prefix, with short timeouts."""
    options: dict[str, object] = {"timeout": 2.0, "retries": 3, "backoff": 0.01, "max_backoff": 0.05}
    options.update(kwargs)
    options.setdefault("prefix", f"t-{secrets.token_hex(8)}")
    return S3ObjectStore(bucket, endpoint_url=server.endpoint_url, access_key=server.access_key,
                         secret_key=server.secret_key, region=server.region, **options)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["memory", "s3"])
def store(request: pytest.FixtureRequest) -> Iterator[ObjectStore]:
    if request.param == "memory":
        yield MemoryObjectStore()
        return
    s3 = s3_store(request.getfixturevalue("s3_server"), request.getfixturevalue("s3_bucket"),
                  max_connections=32)
    yield s3
    s3.close()


# --- every backend --------------------------------------------------------------------


def test_put_get_delete_round_trip(store: ObjectStore) -> None:
    store.put("a/one", b"first")
    assert store.get("a/one") == b"first"
    store.put("a/one", b"second")  # put overwrites
    assert store.get("a/one") == b"second"
    store.delete("a/one")
    with pytest.raises(ObjectNotFoundError):
        store.get("a/one")
    store.delete("a/one")  # idempotent
    store.delete("never/there")


def test_binary_and_empty_objects(store: ObjectStore) -> None:
    blobs = {"bin/all-bytes": bytes(range(256)) * 64, "bin/empty": b"",
             "bin/random": os.urandom(1 << 20), "bin/crlf": b"\r\n\x00\r"}
    for key, data in blobs.items():
        store.put(key, data)
    for key, data in blobs.items():
        assert store.get(key) == data


def test_missing_key_is_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFoundError) as info:
        store.get("no/such/key")
    assert isinstance(info.value, FileNotFoundError)  # callers may catch the builtin
    assert "no/such/key" in str(info.value)


def test_put_if_absent_keeps_first(store: ObjectStore) -> None:
    assert store.put_if_absent("cp/0001", b"first") is True
    assert store.put_if_absent("cp/0001", b"second") is False
    assert store.get("cp/0001") == b"first"
    store.delete("cp/0001")
    assert store.put_if_absent("cp/0001", b"third") is True
    assert store.get("cp/0001") == b"third"


def test_put_if_absent_race_has_one_winner(store: ObjectStore) -> None:
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for round_ in range(3):  # SeaweedFS makes some losers wait 1-2 s: keep it short
            key = f"race/{round_}"
            results = list(pool.map(lambda i, k=key: (i, store.put_if_absent(k, b"%d" % i * 100)), range(16)))
            winners = [i for i, won in results if won]
            assert len(winners) == 1, results
            assert store.get(key) == b"%d" % winners[0] * 100


def test_list_prefix_and_start_after(store: ObjectStore) -> None:
    keys = ["seg/0003", "seg/0001", "seg/0002", "segx/0001", "other/0001"]
    for key in keys:
        store.put(key, key.encode())
    assert list(store.list("seg/")) == ["seg/0001", "seg/0002", "seg/0003"]
    assert list(store.list("seg")) == ["seg/0001", "seg/0002", "seg/0003", "segx/0001"]
    assert list(store.list("seg/", start_after="seg/0001")) == ["seg/0002", "seg/0003"]
    assert list(store.list("seg/", start_after="seg/00015")) == ["seg/0002", "seg/0003"]
    assert list(store.list("seg/", start_after="seg/0003")) == []
    assert list(store.list("nothing/")) == []
    assert list(store.list()) == sorted(keys)


def test_list_more_than_one_page(store: ObjectStore) -> None:
    keys = [f"many/{i:020d}" for i in range(1050)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda k: store.put(k, b"x"), reversed(keys)))
    assert list(store.list("many/")) == keys
    assert list(store.list("many/", start_after=keys[998])) == keys[999:]  # crosses the page end
    assert list(store.list("many/", start_after=keys[1000])) == keys[1001:]
    assert list(store.list("many/", start_after="many/")) == keys
    assert list(store.list("", start_after=keys[-1])) == []


@pytest.mark.parametrize("key", ["", "/lead", "a//b", "trail/", "a/./b", "a/../b", ".", "..",
                                 "tab\there", "nul\x00", "x" * 1025])
def test_bad_keys_are_refused_everywhere(store: ObjectStore, key: str) -> None:
    for call in (lambda: store.put(key, b"x"), lambda: store.put_if_absent(key, b"x"),
                 lambda: store.get(key), lambda: store.delete(key)):
        with pytest.raises(InvalidInputError):
            call()


def test_bad_prefix_is_refused(store: ObjectStore) -> None:
    with pytest.raises(InvalidInputError):
        list(store.list("a//"))
    assert list(store.list("a/")) == []  # a trailing '/' is fine on a prefix


# --- fault injection above the interface (for higher layers' tests) -----------------


def test_fault_injecting_store_fails_scripted_calls() -> None:
    inner = MemoryObjectStore()
    faulty = FaultInjectingStore(inner)
    faulty.inject(count=2, ops=["put"])
    for _ in range(2):
        with pytest.raises(StorageUnavailableError):
            faulty.put("k", b"v")
    assert faulty.pending == 0
    faulty.put("k", b"v")
    assert faulty.get("k") == b"v"
    faulty.inject(StorageAuthError, ops=["list"])
    with pytest.raises(StorageAuthError):
        list(faulty.list(""))
    assert [op for op, _ in faulty.calls] == ["put", "put", "put", "get", "list"]


def test_fault_injecting_store_lost_response() -> None:
    faulty = FaultInjectingStore(MemoryObjectStore())
    faulty.inject(after=True, ops=["put_if_absent"])
    with pytest.raises(StorageUnavailableError):
        faulty.put_if_absent("k", b"v")  # the caller saw an error ...
    assert faulty.get("k") == b"v"  # ... but the write landed
    assert faulty.put_if_absent("k", b"w") is False


# --- S3 only --------------------------------------------------------------------------


def test_import_does_not_load_boto3() -> None:
    code = ("import sys, fabric.objectstore; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_seaweedfs_honours_if_none_match(s3_server: S3Server, s3_bucket: str) -> None:
    """Raw boto3, no wrapper: the server itself refuses the second conditional put."""
    import botocore.exceptions

    c = client(s3_server, max_attempts=1)
    c.put_object(Bucket=s3_bucket, Key="k", Body=b"one", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as info:
        c.put_object(Bucket=s3_bucket, Key="k", Body=b"two", IfNoneMatch="*")
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert c.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"one"


def test_empty_put_does_not_poison_the_connection(s3_server: S3Server, s3_bucket: str) -> None:
    """botocore#3755: with ``Expect: 100-continue`` an empty PUT left the pooled connection
    garbled and the next request timed out. With no retries allowed, any stall fails."""
    store = s3_store(s3_server, s3_bucket, retries=0, max_connections=1)
    for i in range(3):
        store.put(f"empty/{i}", b"")
        store.put(f"full/{i}", b"data")
        assert store.put_if_absent(f"empty/{i}", b"") is False
        assert store.put_if_absent(f"cond/{i}", b"") is True
        assert store.get(f"full/{i}") == b"data"


def test_seaweedfs_lists_in_directory_order(s3_server: S3Server, s3_bucket: str) -> None:
    """Why keys must be flat, fixed-width names: SeaweedFS lists ``a/b`` before ``a-c``
    (S3 would not) and `start_after` then skips keys. If this starts failing, SeaweedFS
    fixed it: update the module docstring of fabric/objectstore.py."""
    store = s3_store(s3_server, s3_bucket)
    for key in ("a", "a/b", "a-c", "a0"):
        store.put(key, b"x")
    assert list(store.list()) == ["a", "a/b", "a-c", "a0"]  # byte order: a, a-c, a/b, a0
    assert list(store.list(start_after="a-c")) == ["a0"]  # byte order: a/b, a0


def test_endpoint_and_credentials_from_env(s3_env: dict[str, str], s3_bucket: str) -> None:
    """A subprocess configured only by the environment, as the CLI will be."""
    code = textwrap.dedent(f"""
        from fabric.objectstore import S3ObjectStore
        store = S3ObjectStore({s3_bucket!r}, prefix="env")
        store.put("hello", b"from a subprocess")
        print(store.get("hello").decode())
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=s3_env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "from a subprocess"
    assert S3ObjectStore(s3_bucket, prefix="env").get("hello") == b"from a subprocess"  # env of this process too


@pytest.mark.parametrize("which", ["secret", "key id"])
def test_bad_credentials_are_auth_errors(s3_server: S3Server, s3_bucket: str, which: str) -> None:
    good = s3_store(s3_server, s3_bucket)
    good.put("k", b"v")
    bad = S3ObjectStore(s3_bucket, prefix=good.prefix, endpoint_url=s3_server.endpoint_url,
                        access_key="nobody" if which == "key id" else s3_server.access_key,
                        secret_key="wrong-secret", retries=3)
    calls: list[Callable[[], object]] = [
        lambda: bad.get("k"), lambda: bad.put("k", b"w"), lambda: bad.put_if_absent("n", b"w"),
        lambda: bad.delete("k"), lambda: list(bad.list())]
    for call in calls:
        with pytest.raises(StorageAuthError) as info:
            call()
        assert isinstance(info.value, PermissionError)
        assert info.value.hint and "AWS_SECRET_ACCESS_KEY" in info.value.hint
    assert good.get("k") == b"v"


def test_missing_bucket_is_auth_error(s3_server: S3Server) -> None:
    store = s3_store(s3_server, f"missing-{secrets.token_hex(6)}")
    for call in (lambda: store.get("k"), lambda: store.put("k", b"v"), lambda: store.delete("k"),
                 lambda: list(store.list())):
        with pytest.raises(StorageAuthError) as info:
            call()
        assert "NoSuchBucket" in str(info.value)
        assert info.value.hint and "bucket" in info.value.hint


def test_unreachable_endpoint_is_unavailable_quickly(s3_server: S3Server) -> None:
    store = S3ObjectStore("bucket", endpoint_url=f"http://127.0.0.1:{free_port()}", access_key="a",
                          secret_key="b", timeout=1.0, retries=2, max_elapsed=5.0, backoff=0.05)
    with pytest.raises(StorageUnavailableError) as info:
        store.get("k")
    assert isinstance(info.value, ConnectionError)
    assert "failed 3 time(s)" in str(info.value)  # retries + 1 attempts, then a clear error


TRANSIENT: list[FaultKind] = ["500", "503", "slowdown", "timeout", "connect"]


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_faults_within_retries_succeed(s3_server: S3Server, s3_bucket: str, kind: FaultKind) -> None:
    store = s3_store(s3_server, s3_bucket, retries=3)
    store.inject_faults(kind, 3)  # one for each retry
    store.put("k", b"v")
    assert store.faults_pending() == 0
    store.inject_faults(kind, 2, ops={"GetObject"})
    assert store.get("k") == b"v"
    store.inject_faults(kind, 3, ops={"ListObjectsV2"})
    assert list(store.list()) == ["k"]
    store.inject_faults(kind, 1, ops={"DeleteObject"})
    store.delete("k")
    assert store.faults_pending() == 0
    assert list(store.list()) == []


@pytest.mark.parametrize("kind", TRANSIENT)
def test_transient_faults_beyond_retries_are_unavailable(s3_server: S3Server, s3_bucket: str,
                                                         kind: FaultKind) -> None:
    store = s3_store(s3_server, s3_bucket, retries=2)
    store.inject_faults(kind, 5, ops={"PutObject"})
    with pytest.raises(StorageUnavailableError) as info:
        store.put("k", b"v")
    assert store.faults_pending() == 2  # exactly retries + 1 attempts were made
    assert "failed 3 time(s)" in str(info.value)
    store.inject_faults(kind, 3, ops={"ListObjectsV2"})
    listing = store.list()  # lazy: nothing sent yet
    assert store.faults_pending() == 5
    with pytest.raises(StorageUnavailableError):
        next(listing)
    assert store.faults_pending() == 2
    store.put("k", b"v")  # the two put faults left are used up here, then it works
    assert store.faults_pending() == 0
    assert store.get("k") == b"v"


def test_retry_budget_bounds_total_time(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_store(s3_server, s3_bucket, retries=50, backoff=0.2, max_backoff=0.2, max_elapsed=0.5)
    store.inject_faults("503", 50)
    with pytest.raises(StorageUnavailableError):
        store.get("k")
    assert store.faults_pending() > 40  # gave up on time, long before the count


def test_access_denied_is_not_retried(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_store(s3_server, s3_bucket, retries=3)
    store.inject_faults("403", 3)
    with pytest.raises(StorageAuthError):
        store.put("k", b"v")
    assert store.faults_pending() == 2


def test_put_if_absent_after_lost_response_is_ours(s3_server: S3Server, s3_bucket: str) -> None:
    """The put landed, the answer was lost, the retry sees 412: same bytes, so it was ours."""
    store = s3_store(s3_server, s3_bucket)
    store.inject_faults("lost-response", 1, ops={"PutObject"})
    assert store.put_if_absent("k", b"mine") is True
    assert store.faults_pending() == 0
    assert store.get("k") == b"mine"
    store.inject_faults("timeout", 1, ops={"PutObject"})  # a retry that meets someone else's object
    assert store.put_if_absent("k", b"other") is False
    assert store.get("k") == b"mine"


def test_lost_response_on_put_is_retried(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_store(s3_server, s3_bucket)
    store.inject_faults("lost-response", 2)
    store.put("k", b"v")
    assert store.faults_pending() == 0
    assert store.get("k") == b"v"


def test_paused_server_is_unavailable_then_recovers(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_store(s3_server, s3_bucket, timeout=0.5, retries=1, max_elapsed=3.0)
    store.put("k", b"v")
    with s3_server.paused():
        with pytest.raises(StorageUnavailableError) as info:
            store.get("k")
        assert "timeout" in str(info.value).lower()
    assert store.get("k") == b"v"


def test_stopped_server_is_unavailable_then_restart_recovers(tmp_path: Path) -> None:
    with S3Server(tmp_path / "weed") as server:
        bucket = f"restart-{secrets.token_hex(4)}"
        client(server).create_bucket(Bucket=bucket)
        store = s3_store(server, bucket, timeout=0.5, retries=1)
        store.put("k", b"kept")
        ports = dict(server.ports)
        server.stop()
        with pytest.raises(StorageUnavailableError):
            store.get("k")
        with pytest.raises(StorageUnavailableError):
            store.put("k2", b"v")
        server.start()
        assert server.ports == ports  # same endpoint, so the old client works again
        assert store.get("k") == b"kept"
        store.put("k2", b"v")
        assert list(store.list()) == ["k", "k2"]


def test_errors_never_leak_botocore(s3_server: S3Server) -> None:
    """Every failure above is a StorageError; nothing from botocore crosses the API."""
    store = S3ObjectStore("bucket", endpoint_url=f"http://127.0.0.1:{free_port()}", retries=0,
                          access_key="a", secret_key="b")
    for call in (lambda: store.get("k"), lambda: store.put("k", b""), lambda: list(store.list())):
        with pytest.raises(StorageError) as info:
            call()
        assert not type(info.value).__module__.startswith("botocore")
