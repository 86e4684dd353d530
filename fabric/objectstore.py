"""A narrow object-store interface, and its S3 and in-memory backends.

Litestream's ``ReplicaClient`` shape: five operations, no logic. Shipping, catch-up,
retention and restore are written once above `ObjectStore` and never see boto3; the
backends only move bytes and translate failures into `fabric.errors`:

- `ObjectNotFoundError`     the key does not exist (``get``).
- `StorageAuthError`        credentials refused, access denied, or no such bucket:
                            retrying cannot help, a human must.
- `StorageUnavailableError` unreachable, timed out, 5xx or throttled, still so after a
                            bounded number of retries (exponential backoff, jitter) and
                            a bounded total time: the caller keeps data local, ships later.
- `StorageError`            anything else the store refused.

Keys are validated alike by every backend (`check_key`): no empty, ``.`` or ``..``
segment, no leading or trailing ``/``, no control characters. S3 itself would accept
those, but filer-backed servers (SeaweedFS) silently fold ``a//b`` into ``a/b`` and
treat ``dir/`` as a directory, so such keys are refused before they can alias.

Listing order: S3 lists in UTF-8 byte order; SeaweedFS walks directories instead, so
``a/b`` comes before ``a-c`` and ``start_after`` skips keys. Name objects with
fixed-width names inside one "directory" (``segments/%020d.jsonl``) and both agree.

boto3 is imported lazily (only by `S3ObjectStore`): importing this module stays cheap.
"""

from __future__ import annotations

import bisect
import builtins
import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, TypeVar

from fabric.errors import (
    ConfigurationError,
    InvalidInputError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StorageAuthError,
    StorageError,
    StorageUnavailableError,
)

__all__ = [
    "FaultInjectingStore",
    "Fault",
    "FaultKind",
    "MemoryObjectStore",
    "ObjectStore",
    "S3ObjectStore",
    "check_key",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_KEY_BYTES: Final = 1024  # S3's limit, prefix included


class ObjectStore(Protocol):
    """Where the log is shipped. Every method is safe to call from several threads."""

    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing what was there."""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store `data` only if `key` does not exist; False (nothing written) if it does."""

    def get(self, key: str) -> bytes:
        """The bytes under `key`; `ObjectNotFoundError` if there are none."""

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """Keys starting with `prefix` and sorting after `start_after`, in sort order.

        Lazy: errors surface while iterating. Nothing there: an empty iterator.
        """


def check_key(key: str) -> str:
    """Return `key` if every backend stores it under exactly that name, else raise.

    Raises `InvalidInputError` naming the key and what is wrong with it.
    """
    problem = _key_problem(key, prefix=False)
    if problem:
        raise InvalidInputError(f"object key {key!r} {problem}")
    return key


def _check_prefix(prefix: str) -> str:
    problem = _key_problem(prefix, prefix=True)
    if problem:
        raise InvalidInputError(f"key prefix {prefix!r} {problem}")
    return prefix


def _key_problem(key: str, *, prefix: bool) -> str | None:
    if not isinstance(key, str):
        return "is not a string"
    if not key:
        return None if prefix else "is empty"
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "contains a control character"
    if key.startswith("/"):
        return "starts with '/'"
    if key.endswith("/") and not prefix:
        return "ends with '/' (a directory marker on filer-backed stores)"
    segments = key.split("/")
    if prefix and key.endswith("/"):
        segments.pop()
    if any(s in ("", ".", "..") for s in segments):
        return "has an empty, '.' or '..' path segment"
    return None


# --- in memory ----------------------------------------------------------------------


class MemoryObjectStore:
    """A dict behind a lock, with the semantics of `S3ObjectStore`; for unit tests."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        check_key(key)
        with self._lock:
            self._objects[key] = bytes(data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        check_key(key)
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = bytes(data)
            return True

    def get(self, key: str) -> bytes:
        check_key(key)
        with self._lock:
            try:
                return self._objects[key]
            except KeyError:
                raise ObjectNotFoundError(f"no object {key!r} in memory store") from None

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        _check_prefix(prefix)
        with self._lock:  # a snapshot: writers may go on while the caller iterates
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        if start_after is not None:
            keys = keys[bisect.bisect_right(keys, start_after):]
        yield from keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._objects)


# --- fault injection above the interface ---------------------------------------------


Op = Literal["put", "put_if_absent", "get", "delete", "list"]


@dataclass
class Fault:
    """`count` calls to one of `ops` (None: any) fail with `error(message)`.

    ``after=True`` lets the call reach the inner store first and fails only then: a put
    that landed although the caller saw an error (a lost response). For ``list`` the
    error comes after the last key.
    """

    error: Callable[[str], Exception] = StorageUnavailableError
    count: int = 1
    ops: frozenset[str] | None = None
    after: bool = False


class FaultInjectingStore:
    """Wraps any `ObjectStore` and fails scripted calls, for tests of the layers above.

    Faults here are already past retries (what callers of an `ObjectStore` see). To
    exercise `S3ObjectStore`'s own retries against a real server, use
    `S3ObjectStore.inject_faults` instead.
    """

    def __init__(self, inner: ObjectStore, faults: Iterable[Fault] = ()) -> None:
        self.inner = inner
        self._faults = builtins.list(faults)
        self._lock = threading.Lock()
        self.calls: builtins.list[tuple[str, str]] = []  # (op, key or prefix), in order

    def inject(self, error: Callable[[str], Exception] = StorageUnavailableError, count: int = 1, *,
               ops: Iterable[Op] | None = None, after: bool = False) -> None:
        with self._lock:
            self._faults.append(Fault(error, count, None if ops is None else frozenset(ops), after))

    @property
    def pending(self) -> int:
        """Injected failures not yet delivered."""
        with self._lock:
            return sum(f.count for f in self._faults)

    def _take(self, op: str, key: str) -> Fault | None:
        with self._lock:
            self.calls.append((op, key))
            for fault in self._faults:
                if fault.count > 0 and (fault.ops is None or op in fault.ops):
                    fault.count -= 1
                    return fault
        return None

    def _run(self, op: str, key: str, call: Callable[[], T]) -> T:
        fault = self._take(op, key)
        if fault is not None and not fault.after:
            raise fault.error(f"injected fault: {op} {key!r}")
        result = call()
        if fault is not None:
            raise fault.error(f"injected fault after {op} {key!r} succeeded")
        return result

    def put(self, key: str, data: bytes) -> None:
        self._run("put", key, lambda: self.inner.put(key, data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        return self._run("put_if_absent", key, lambda: self.inner.put_if_absent(key, data))

    def get(self, key: str) -> bytes:
        return self._run("get", key, lambda: self.inner.get(key))

    def delete(self, key: str) -> None:
        self._run("delete", key, lambda: self.inner.delete(key))

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        fault = self._take("list", prefix)
        if fault is not None and not fault.after:
            raise fault.error(f"injected fault: list {prefix!r}")
        yield from self.inner.list(prefix, start_after)
        if fault is not None:
            raise fault.error(f"injected fault after list {prefix!r}")


# --- S3 -------------------------------------------------------------------------------

FaultKind = Literal["500", "503", "slowdown", "timeout", "connect", "lost-response", "403"]
"""Failures `S3ObjectStore.inject_faults` can fake inside botocore:

``500`` InternalError, ``503`` ServiceUnavailable, ``slowdown`` 503 SlowDown (throttled),
``timeout`` a read timeout, ``connect`` endpoint unreachable (all before sending),
``lost-response`` the request is applied, then a read timeout, ``403`` AccessDenied.
"""

_HTTP_FAULTS: Final[dict[str, tuple[int, str, str]]] = {
    "500": (500, "InternalError", "We encountered an internal error. Please try again."),
    "503": (503, "ServiceUnavailable", "Service is unable to handle request."),
    "slowdown": (503, "SlowDown", "Please reduce your request rate."),
    "403": (403, "AccessDenied", "Access Denied"),
}

# Error codes by what a caller can do about them. Everything unlisted falls back to the
# HTTP status: 5xx and 429 retry, 401/403 auth, others a plain StorageError.
_RETRY_CODES: Final = frozenset({
    "InternalError", "ServiceUnavailable", "SlowDown", "SlowDownRead", "SlowDownWrite",
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException",
    "PriorRequestNotComplete", "OperationAborted",
    # If-None-Match raced another conditional write; AWS says: retry (then 412 or success).
    "ConditionalRequestConflict",
})
_AUTH_CODES: Final = frozenset({
    "AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidAccessKeyId",
    "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
    "InvalidSecurity", "MissingSecurityHeader", "NotSignedUp", "InvalidClientTokenId",
})
_BUCKET_CODES: Final = frozenset({
    "NoSuchBucket", "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
    "InvalidBucketName",
})
_AUTH_HINT: Final = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the role) and the bucket policy"
_BUCKET_HINT: Final = "check the bucket name and region (AWS_DEFAULT_REGION), and that the bucket exists"
_UNAVAILABLE_HINT: Final = "writes stay local; they are shipped when the store answers again"


class S3ObjectStore:
    """`ObjectStore` on S3 or an S3-compatible server, with bounded retries.

    Uses only GetObject, PutObject, DeleteObject and ListObjectsV2, so a policy granting
    those four on ``bucket/prefix*`` is enough. Endpoint: `endpoint_url`, else the env
    (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), else AWS; a custom endpoint gets
    path-style addressing. Credentials: arguments, else boto3's usual chain.

    Retries: timeouts, dropped connections, 5xx, 429 and throttling codes are retried up
    to `retries` times with exponential backoff and jitter (`backoff` doubling, at most
    `max_backoff`), and no retry starts past `max_elapsed` seconds after the first
    attempt; then `StorageUnavailableError`. `timeout` bounds each attempt's wait for
    the server (and `connect_timeout`, default min(timeout, 1 s), its TCP connect), so a
    refused connection fails in well under a second and a hung server within
    (retries + 1) x timeout. botocore's own retries are off: one loop, one budget.
    Retried PUTs may land twice; for `put` that is harmless, `put_if_absent` handles it.

    ``put_if_absent`` sends ``If-None-Match: *`` (AWS since 2024, SeaweedFS, MinIO).
    A server that ignores that header silently overwrites: check new backends with
    ``tests/s3/test_objectstore.py`` first.
    """

    def __init__(self, bucket: str, prefix: str = "", region: str | None = None,
                 endpoint_url: str | None = None, *, retries: int = 3, timeout: float = 2.0,
                 connect_timeout: float | None = None, max_elapsed: float = 10.0,
                 backoff: float = 0.05, max_backoff: float = 1.0,
                 access_key: str | None = None, secret_key: str | None = None,
                 session_token: str | None = None, path_style: bool | None = None,
                 max_connections: int = 16) -> None:
        import boto3
        import botocore.exceptions
        from botocore.config import Config

        if not bucket:
            raise ConfigurationError("S3ObjectStore needs a bucket name")
        if retries < 0 or timeout <= 0 or max_elapsed <= 0:
            raise ConfigurationError("retries must be >= 0, timeout and max_elapsed > 0")
        if prefix and not prefix.endswith("/"):
            prefix += "/"  # a prefix is a directory: "runs/a" and "runs/a/" mean the same
        _check_prefix(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.retries = retries
        self.max_elapsed = max_elapsed
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.endpoint_url = (endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
                             or os.environ.get("AWS_ENDPOINT_URL") or None)
        self._exc = botocore.exceptions
        self._faults: builtins.list[builtins.list[Any]] = []  # [kind, remaining, ops]
        self._faults_lock = threading.Lock()
        self._hooked = False

        if path_style is None:
            path_style = self.endpoint_url is not None
        config = Config(
            connect_timeout=connect_timeout if connect_timeout is not None else min(timeout, 1.0),
            read_timeout=timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=max_connections,
            s3={"addressing_style": "path" if path_style else "auto"},
            user_agent_extra="memory-fabric",
        )
        session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                         aws_session_token=session_token, region_name=region)
        if session.region_name is None and self.endpoint_url is not None:
            region = "us-east-1"  # S3-compatible servers sign with it whatever they are
        try:
            self._client: Any = session.client("s3", region_name=region or session.region_name,
                                               endpoint_url=self.endpoint_url, config=config)
        except (botocore.exceptions.BotoCoreError, ValueError) as e:
            raise ConfigurationError(f"cannot configure S3 client for bucket {bucket!r}: {e}") from e
        self._client.meta.events.register("before-sign.s3.PutObject", _no_expect_continue)

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3ObjectStore(s3://{self.bucket}/{self.prefix}{where})"

    def close(self) -> None:
        """Release pooled connections."""
        self._client.close()

    # --- the interface ----------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        full = self._key(key)
        self._retrying("put", full, lambda: self._client.put_object(Bucket=self.bucket, Key=full, Body=data))

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Conditional put. A retry after an ambiguous failure (timeout, 5xx: the first
        attempt may have landed) that then finds the key holding exactly `data` counts
        as our write and returns True; there is no way to tell the two apart, and for
        the same bytes there is no need to."""
        full = self._key(key)
        retried = [False]

        def attempt() -> None:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*")

        try:
            self._retrying("put_if_absent", full, attempt, on_retry=lambda: retried.__setitem__(0, True))
        except PreconditionFailedError:
            if not retried[0]:
                return False
            try:
                return self.get(key) == data
            except ObjectNotFoundError:  # deleted since: whoever wrote it, it is not ours now
                return False
        return True

    def get(self, key: str) -> bytes:
        full = self._key(key)

        def attempt() -> bytes:
            body = self._client.get_object(Bucket=self.bucket, Key=full)["Body"]
            with contextlib.closing(body):
                return body.read()  # type: ignore[no-any-return]

        return self._retrying("get", full, attempt)

    def delete(self, key: str) -> None:
        full = self._key(key)
        try:
            self._retrying("delete", full, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))
        except ObjectNotFoundError:  # S3 answers 204 anyway; some servers say 404
            pass

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        _check_prefix(prefix)
        full_prefix = self.prefix + prefix
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full_prefix, "MaxKeys": 1000}
        if start_after is not None:
            request["StartAfter"] = self.prefix + start_after
        cut = len(self.prefix)
        while True:
            page = self._retrying("list", full_prefix, lambda: self._client.list_objects_v2(**request))
            for obj in page.get("Contents", ()):
                yield obj["Key"][cut:]
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(f"listing s3://{self.bucket}/{full_prefix} was truncated without a token")
            request["ContinuationToken"] = token

    # --- retries and translation -----------------------------------------------

    def _key(self, key: str) -> str:
        full = self.prefix + check_key(key)
        if len(full.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
            raise InvalidInputError(f"object key {full!r} is longer than {MAX_KEY_BYTES} bytes with the prefix")
        return full

    def _retrying(self, op: str, key: str, attempt: Callable[[], T], *,
                  on_retry: Callable[[], None] | None = None) -> T:
        """Run `attempt`, retrying transient failures; translate every botocore error."""
        started = time.monotonic()
        failures = 0
        while True:
            try:
                return attempt()
            except (self._exc.BotoCoreError, self._exc.ClientError) as e:
                kind, error = self._translate(e, op, key)
                if kind != "retry":
                    raise error from e
                failures += 1
                delay = min(self.max_backoff, self.backoff * 2 ** (failures - 1))
                delay = delay / 2 + random.uniform(0, delay / 2)  # equal jitter: spread, never zero
                elapsed = time.monotonic() - started
                if failures > self.retries or elapsed + delay > self.max_elapsed:
                    raise StorageUnavailableError(
                        f"{op} s3://{self.bucket}/{key} failed {failures} time(s) in {elapsed:.1f} s: {error}",
                        hint=_UNAVAILABLE_HINT) from e
                log.debug("%s s3://%s/%s: %s; retry %d in %.2f s", op, self.bucket, key, error, failures, delay)
                if on_retry is not None:
                    on_retry()
                time.sleep(delay)

    def _translate(self, e: Exception, op: str, key: str) -> tuple[str, Exception]:
        """(what to do, error to raise): "retry" or "raise"."""
        where = f"s3://{self.bucket}/{key}"
        exc = self._exc
        if isinstance(e, exc.ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            text = f"{code or status}: {err.get('Message', '')}".rstrip(": ")
            if code == "PreconditionFailed" or status == 412:
                return "raise", PreconditionFailedError(f"{op} {where}: the object already exists")
            if code in _RETRY_CODES or status >= 500 or status == 429:
                return "retry", StorageUnavailableError(f"{op} {where}: {text}")
            if code in _BUCKET_CODES or status == 301:
                return "raise", StorageAuthError(f"{op} {where}: {text}", hint=_BUCKET_HINT)
            if code in _AUTH_CODES or status in (401, 403):
                return "raise", StorageAuthError(f"{op} {where}: {text}", hint=_AUTH_HINT)
            if code in ("NoSuchKey", "NotFound") or status == 404:
                return "raise", ObjectNotFoundError(f"no object {where}")
            return "raise", StorageError(f"{op} {where}: {text}")
        if isinstance(e, (exc.NoCredentialsError, exc.PartialCredentialsError, exc.CredentialRetrievalError)):
            return "raise", StorageAuthError(f"{op} {where}: {e}", hint=_AUTH_HINT)
        if isinstance(e, exc.SSLError):  # a certificate will not fix itself
            return "raise", StorageError(f"{op} {where}: {e}", hint="check the endpoint's TLS certificate")
        if isinstance(e, (exc.HTTPClientError, exc.ConnectionError, exc.IncompleteReadError,
                          exc.FlexibleChecksumError)):
            return "retry", StorageUnavailableError(f"{op} {where}: {e}")
        if isinstance(e, exc.NoRegionError):
            return "raise", ConfigurationError(f"{op} {where}: {e}", hint="set AWS_DEFAULT_REGION")
        return "raise", StorageError(f"{op} {where}: {e}")

    # --- fault injection inside botocore (tests) ---------------------------------

    def inject_faults(self, kind: FaultKind, count: int = 1, *, ops: Iterable[str] | None = None) -> None:
        """Make the next `count` HTTP requests (of S3 operations `ops`, e.g. ``{"PutObject"}``;
        None: any) fail with `kind`, faked inside botocore so this class's real retry and
        translation code runs against a real server. See `FaultKind`."""
        if kind not in _HTTP_FAULTS and kind not in ("timeout", "connect", "lost-response"):
            raise InvalidInputError(f"unknown fault kind {kind!r}")
        with self._faults_lock:
            if not self._hooked:
                events = self._client.meta.events
                events.register("before-send.s3", self._before_send, unique_id="fabric-faults-send")
                events.register("after-call.s3", self._after_call, unique_id="fabric-faults-call")
                self._hooked = True
            self._faults.append([kind, count, None if ops is None else frozenset(ops)])

    def faults_pending(self) -> int:
        """Injected faults not yet delivered (0 once every one was hit)."""
        with self._faults_lock:
            return sum(f[1] for f in self._faults)

    def _take_fault(self, event_name: str, *, after: bool) -> str | None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._faults_lock:
            for fault in self._faults:
                kind, remaining, ops = fault
                if remaining > 0 and (kind == "lost-response") == after and (ops is None or operation in ops):
                    fault[1] -= 1
                    return str(kind)
        return None

    def _before_send(self, request: Any, event_name: str, **_: Any) -> Any:
        kind = self._take_fault(event_name, after=False)
        if kind is None:
            return None
        if kind == "timeout":
            raise self._exc.ReadTimeoutError(endpoint_url=request.url)
        if kind == "connect":
            raise self._exc.EndpointConnectionError(endpoint_url=request.url)
        from botocore.awsrequest import AWSResponse

        status, code, message = _HTTP_FAULTS[kind]
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                f"<Message>{message}</Message><RequestId>injected</RequestId></Error>").encode()
        return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _RawBody(body))

    def _after_call(self, event_name: str, **_: Any) -> None:
        if self._take_fault(event_name, after=True) is not None:
            raise self._exc.ReadTimeoutError(endpoint_url=self.endpoint_url or "s3")


def _no_expect_continue(request: Any, **_: Any) -> None:
    """Send PUTs without ``Expect: 100-continue``.

    botocore (1.43, boto/botocore#3755) keeps the status line of a final response that
    came instead of "100 Continue" and pins it on the next response read on that pooled
    connection. Go servers (SeaweedFS, MinIO) answer an empty PUT exactly so; the next
    PUT then reads a garbled response, waits out its read timeout and is retried,
    after the server had applied it. Our objects are small: sending the body straight
    away costs nothing and saves a round trip per PUT.
    """
    if "Expect" in request.headers:
        del request.headers["Expect"]


class _RawBody:
    """Just enough of urllib3's response for `AWSResponse.content`."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self._data
