"""`fabric doctor`: does the store work end to end, and how far behind is anything?

For ``s3`` (what the seed promised, done for real): resolve the bucket, probe it, write 25
test records through a real s3 fabric in a temporary data_dir that ships to a *scratch
prefix* (``<prefix>_doctor/<run>/``), wait until they are in the bucket, read every record
object back (decrypted with the store's key if one is given) and compare it field by
field, restore the scratch stream into another temporary directory and compare digests,
then delete everything under the scratch prefix. The real log and its objects are never
touched, so no test record is ever folded into anyone's state (forgetting them in the
real log would still leave events there). If a local s3 store exists (``data_dir``, else
``./artifacts/memory/s3_fallback``), its backlog is reported: lines in the local log the
bucket's checkpoint does not cover.

For ``local_jsonl``/``sqlite``: the hash chain of the whole log (`EventLog.verify`), the
key, and the view's freshness (SQLite's checkpoint against the log's end).

Exit codes as the seed's: 0 healthy, 1 partial (a check failed), 2 misconfigured (no
bucket, credentials refused, bucket missing, endpoint unreachable, wrong key, no store).
Every run appends one JSON line to ``artifacts/lens/memory_fabric/metrics.jsonl``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import msgspec

from fabric.errors import (
    ConfigurationError,
    CorruptLogError,
    CryptoError,
    FabricError,
    ObjectNotFoundError,
    StorageAuthError,
    StorageUnavailableError,
)

METRICS_PATH: Final = "artifacts/lens/memory_fabric/metrics.jsonl"
SCRATCH_DIR: Final = "_doctor"
DEFAULT_RECORDS: Final = 25
EXIT_HEALTHY, EXIT_PARTIAL, EXIT_MISCONFIGURED = 0, 1, 2


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float | None = None


@dataclass
class DoctorReport:
    backend: str
    checks: list[Check] = field(default_factory=list)
    misconfigured: str | None = None  # why, when the store cannot even be tried
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.misconfigured is not None:
            return "misconfigured"
        return "healthy" if all(c.ok for c in self.checks) else "partial"

    @property
    def exit_code(self) -> int:
        return {"healthy": EXIT_HEALTHY, "partial": EXIT_PARTIAL}.get(self.status, EXIT_MISCONFIGURED)

    def add(self, name: str, ok: bool, detail: str, seconds: float | None = None) -> Check:
        check = Check(name, ok, detail, None if seconds is None else round(seconds, 4))
        self.checks.append(check)
        return check

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "status": self.status, "exit_code": self.exit_code,
                "misconfigured": self.misconfigured, "checks": [c.__dict__ for c in self.checks],
                "metrics": self.metrics}


def append_metrics(report: DoctorReport, path: str | os.PathLike[str] = METRICS_PATH) -> Path:
    """One JSON line per run, as the seed's lens metrics (the directory is created if needed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    line = {"timestamp": datetime.now(UTC).isoformat(), "component": "memory_fabric", "event": "doctor",
            "backend": report.backend, "status": report.status, "exit_code": report.exit_code,
            "checks_passed": sum(c.ok for c in report.checks), "checks": len(report.checks), **report.metrics}
    with open(target, "ab") as f:
        f.write(msgspec.json.encode(line) + b"\n")
    return target


# --- s3 ------------------------------------------------------------------------------------------


def doctor_s3(config: Mapping[str, Any], *, key: str | None = None, records: int = DEFAULT_RECORDS,
              data_dir: str | None = None, timeout: float = 60.0) -> DoctorReport:
    from fabric.fabric import MemoryFabric  # noqa: PLC0415
    from fabric.s3_layout import open_store, resolve_settings  # noqa: PLC0415

    report = DoctorReport("s3")
    try:
        settings = resolve_settings(config)
    except ConfigurationError as e:
        report.misconfigured = str(e)
        return report
    run = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(4)}"
    scratch_suffix = f"{SCRATCH_DIR}/{run}/"
    report.metrics.update(bucket=settings.bucket, prefix=settings.prefix, endpoint=settings.endpoint_url,
                          scratch_prefix=settings.prefix + scratch_suffix, encrypted=bool(key))
    options = {"timeout": 5.0, "retries": 2, "max_elapsed": 15.0}
    try:
        scratch = open_store(settings, prefix_suffix=scratch_suffix, **options)
        began = time.perf_counter()
        list(scratch.list(""))
        report.add("reach", True, f"{settings.url()} answers", time.perf_counter() - began)
    except StorageAuthError as e:
        report.misconfigured = f"credentials refused or bucket missing: {e}"
        return report
    except StorageUnavailableError as e:
        report.misconfigured = f"endpoint unreachable: {e}"
        return report
    except FabricError as e:
        report.misconfigured = str(e)
        return report

    work = Path(tempfile.mkdtemp(prefix="fabric-doctor-"))
    try:
        _round_trip(report, settings.as_config() | {"prefix": settings.prefix + scratch_suffix}, scratch, work,
                    key, records, timeout, MemoryFabric)
    finally:
        _clean(report, scratch)
        shutil.rmtree(work, ignore_errors=True)
    _backlog(report, settings, data_dir, options)
    return report


def _round_trip(report: DoctorReport, config: dict[str, Any], scratch: Any, work: Path, key: str | None,
                records: int, timeout: float, fabric_cls: Any) -> None:
    from fabric.migrate import combined_digest, store_digests  # noqa: PLC0415
    from fabric.s3_restore import restore  # noqa: PLC0415

    fast = {"writer": "doctor", "ship_interval": 0.01, "durability": "none", "retries": 2, "request_timeout": 5.0,
            "max_backoff": 1.0, "close_timeout": 10.0}
    try:
        fabric = fabric_cls(backend="s3", config={**config, **fast, "data_dir": str(work / "store")},
                            encryption_key=key)
    except FabricError as e:
        report.add("open", False, f"cannot open an s3 store: {e}")
        return
    try:
        expected: dict[str, dict[str, Any]] = {}
        began = time.perf_counter()
        for i in range(records):
            body = {"content": f"fabric doctor test record {i} {secrets.token_hex(4)}",
                    "metadata": {"doctor": True, "i": i}, "tags": ["fabric-doctor"]}
            rid = fabric.store(body["content"], body["metadata"], body["tags"], "metadata")
            expected[rid] = body
        write_s = time.perf_counter() - began
        report.add("write", True, f"{records} test records stored", write_s)
        began = time.perf_counter()
        ok = fabric.view.wait_shipped(timeout)
        ship_s = time.perf_counter() - began
        state = fabric.get_stats()["views"]["s3"]
        report.add("ship", ok, "log, record objects and checkpoint in the bucket" if ok
                   else f"not shipped within {timeout:.0f} s: {state.get('state')} {state.get('error') or ''}",
                   ship_s)
        report.metrics.update(records_written=records, write_seconds=round(write_s, 4), ship_seconds=round(ship_s, 4),
                              requests=state.get("requests"))
        began = time.perf_counter()
        verified = 0
        bad: list[str] = []
        for rid, body in expected.items():
            try:
                got = fabric.view.fetch_record_object(rid)
            except FabricError as e:
                bad.append(f"{rid}: {e}")
                continue
            if got is None:
                bad.append(f"{rid}: missing")
            elif (got.get("id"), got.get("content"), got.get("metadata"), got.get("tags")) != (
                    rid, body["content"], body["metadata"], body["tags"]):
                bad.append(f"{rid}: differs")
            else:
                verified += 1
        read_s = time.perf_counter() - began
        report.add("read", verified == records, f"{verified}/{records} record objects read back and verified"
                   + (f" ({'; '.join(bad[:3])})" if bad else ""), read_s)
        report.metrics.update(records_verified=verified, read_seconds=round(read_s, 4))
        began = time.perf_counter()
        try:
            restore(scratch, work / "restored")
            with fabric_cls(backend="s3", config={**config, "data_dir": str(work / "restored"), "ship": False},
                            encryption_key=key) as copy:
                same = combined_digest(store_digests(copy)) == combined_digest(store_digests(fabric))
                copy.log.verify()
            report.add("restore", same, "the log restored from the bucket folds to the same records"
                       if same else "the log restored from the bucket folds to other records",
                       time.perf_counter() - began)
        except FabricError as e:
            report.add("restore", False, f"restoring the test stream failed: {e}", time.perf_counter() - began)
    finally:
        fabric.close()


def _clean(report: DoctorReport, scratch: Any) -> None:
    began = time.perf_counter()
    try:
        keys = list(scratch.list(""))
        for k in keys:
            scratch.delete(k)
        left = list(scratch.list(""))
        report.add("cleanup", not left, f"{len(keys)} test objects deleted" if not left
                   else f"{len(left)} test objects are left under the scratch prefix", time.perf_counter() - began)
        report.metrics["cleanup_ok"] = not left
    except FabricError as e:
        report.add("cleanup", False, f"could not delete the test objects: {e}")
        report.metrics["cleanup_ok"] = False


def _backlog(report: DoctorReport, settings: Any, data_dir: str | None, options: dict[str, Any]) -> None:
    """How far the local store's log is ahead of the bucket's checkpoint, if there is a local store."""
    from fabric.log import EventLog  # noqa: PLC0415
    from fabric.s3_layout import checkpoint_key, decode_checkpoint, open_store  # noqa: PLC0415
    from fabric.ship_state import read_stream_name  # noqa: PLC0415

    path = Path(data_dir or os.environ.get("IOA_FABRIC_ROOT") or "./artifacts/memory/s3_fallback")
    stream = read_stream_name(path)
    if stream is None:
        return
    try:
        with EventLog(path, create=False, durability="none") as local:
            last = local.last_seq
        store = open_store(settings, **options)
        try:
            ckpt = decode_checkpoint(store.get(checkpoint_key(stream)), checkpoint_key(stream))
            shipped, records_seq = ckpt.log_seq, ckpt.records_seq
        except ObjectNotFoundError:
            shipped, records_seq = 0, 0
    except FabricError as e:
        report.add("backlog", False, f"cannot compare {path} with the bucket: {e}")
        return
    behind = max(0, last - shipped)
    report.metrics.update(backlog_events=behind, local_events=last, shipped_seq=shipped, records_seq=records_seq)
    report.add("backlog", behind == 0,
               f"{path} (writer {stream}): all {last:,} events are in the bucket" if behind == 0 else
               f"{path} (writer {stream}): {behind:,} of {last:,} events are not in the bucket yet "
               f"(checkpoint at {shipped:,}); they ship while the store is open and S3 answers")


# --- local backends --------------------------------------------------------------------------


def doctor_local(backend: str, data_dir: str | None, *, key: str | None = None) -> DoctorReport:
    from fabric.crypto_codec import make_codec  # noqa: PLC0415
    from fabric.log import EventLog  # noqa: PLC0415

    report = DoctorReport(backend)
    path = Path(data_dir or os.environ.get("IOA_FABRIC_ROOT") or "./artifacts/memory")
    report.metrics["data_dir"] = str(path)
    try:
        log = EventLog(path, create=False, durability="none")
    except ConfigurationError as e:
        report.misconfigured = str(e)
        return report
    try:
        try:
            make_codec(log, key)
        except CryptoError as e:
            report.misconfigured = str(e)
            return report
        began = time.perf_counter()
        try:
            verified = log.verify()
            report.add("chain", True, f"{verified.events:,} events in {verified.segments} segments, every hash and "
                       "link verified", time.perf_counter() - began)
            report.metrics.update(events=verified.events, segments=verified.segments, log_bytes=verified.bytes)
        except CorruptLogError as e:
            report.add("chain", False, str(e), time.perf_counter() - began)
            return report
        if log.recovered:
            report.add("tail", False, "; ".join(f"cut {r.dropped_bytes} bytes ({r.reason}) at {r.segment}:{r.offset}"
                                                for r in log.recovered))
        last = log.last_seq
        if backend == "sqlite":
            _sqlite_freshness(report, path, last)
        else:
            report.add("view", True, "the in-memory view is rebuilt from the log on every open")
    finally:
        log.close()
    return report


def _sqlite_freshness(report: DoctorReport, path: Path, last: int) -> None:
    from fabric import backends  # noqa: PLC0415

    try:
        view = backends.open_view("sqlite", path, {})
    except FabricError as e:
        report.add("view", False, f"the sqlite view cannot be opened: {e}")
        return
    try:
        position = int(view.position())
        repaired = list(getattr(view, "recovered", []))
    finally:
        view.close()
    behind = max(0, last - position)
    report.metrics.update(view_position=position, view_behind=behind)
    detail = f"the sqlite view is at seq {position:,} of {last:,}"
    if behind:
        detail += f": {behind:,} events behind (it catches up on the next read, or run `fabric rebuild`)"
    if repaired:
        detail += f"; it was damaged and moved aside: {'; '.join(repaired)}"
    report.add("view", behind == 0 and not repaired, detail)
