"""Moving a store between backends, rebuilding a view, and proving both worked (parity).

Migration is a replay. All backends keep the same event log, so "from local_jsonl to sqlite"
on one data_dir means projecting that log into the SQLite view, resuming from the view's
checkpoint if an earlier attempt was interrupted. To another data_dir it means copying the
records (ids, content, metadata, tags, types, timestamps, embeddings) into the target's own
log in creation order, skipping ids already there, so a re-run resumes too.

Parity is then checked, not assumed: the same digest (`record_digest`) is computed from
each side's records as users see them, and the counts, the per-record digests and a
digest of the whole store must agree.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from fabric import backends
from fabric.errors import ConfigurationError
from fabric.fabric import MemoryFabric
from fabric.log import EventLog
from fabric.model import MemoryRecord, datetime_to_us
from fabric.state import Change

PAGE: Final = 20_000
Progress = Callable[[int, int], None]  # (done, total)
_CANON: Final = msgspec.json.Encoder(order="sorted")


def record_digest(rec: MemoryRecord) -> str:
    """SHA-256 of what a record is, as users see it: id, content, metadata, tags, type, tier, timestamp, embedding.

    Log bookkeeping (seq), access statistics and key order inside metadata are left out, so a
    record copied to another store digests the same.
    """
    emb = None if rec.embedding is None else [rec.embedding.vector, rec.embedding.model, rec.embedding.dimension]
    fields = [rec.id, rec.content, rec.metadata, rec.tags, rec.memory_type.value, rec.storage_tier.value,
              datetime_to_us(rec.timestamp), emb]
    return hashlib.sha256(_CANON.encode(fields)).hexdigest()


def iter_records(fabric: MemoryFabric, page: int = PAGE) -> Iterator[MemoryRecord]:
    """Every live record in creation order, a page at a time."""
    offset = 0
    while True:
        chunk = fabric.list_all(limit=page, offset=offset)
        yield from chunk
        if len(chunk) < page:
            return
        offset += page


def store_digests(fabric: MemoryFabric) -> dict[str, str]:
    return {rec.id: record_digest(rec) for rec in iter_records(fabric)}


def combined_digest(digests: dict[str, str]) -> str:
    """One digest for a whole store: of the per-record digests in id order."""
    h = hashlib.sha256()
    for rid in sorted(digests):
        h.update(digests[rid].encode())
    return h.hexdigest()


@dataclass
class ParityReport:
    source_count: int
    target_count: int
    source_digest: str
    target_digest: str
    missing: list[str] = field(default_factory=list)  # in the source, not in the target (first 20)
    extra: list[str] = field(default_factory=list)  # in the target, not in the source (first 20)
    different: list[str] = field(default_factory=list)  # in both, with other contents (first 20)

    @property
    def ok(self) -> bool:
        return (self.source_count == self.target_count and self.source_digest == self.target_digest
                and not (self.missing or self.extra or self.different))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "source_count": self.source_count, "target_count": self.target_count,
                "source_digest": self.source_digest, "target_digest": self.target_digest,
                "missing": self.missing, "extra": self.extra, "different": self.different}


def parity(source: MemoryFabric, target: MemoryFabric) -> ParityReport:
    """Compare two stores record by record (by `record_digest`)."""
    a = store_digests(source)
    b = store_digests(target)
    return ParityReport(
        source_count=source.count(), target_count=target.count(),
        source_digest=combined_digest(a), target_digest=combined_digest(b),
        missing=sorted(set(a) - set(b))[:20], extra=sorted(set(b) - set(a))[:20],
        different=sorted(rid for rid in set(a) & set(b) if a[rid] != b[rid])[:20],
    )


# --- projecting the log into a view -------------------------------------------------------------


@dataclass
class ReplayReport:
    backend: str
    events: int  # applied by this run
    position: int
    records: int
    seconds: float
    rebuilt: bool  # from scratch (else: resumed from the view's checkpoint)
    view_bytes: int | None

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "events": self.events, "position": self.position, "records": self.records,
                "seconds": round(self.seconds, 3), "events_per_second": round(self.events_per_second),
                "rebuilt": self.rebuilt, "view_bytes": self.view_bytes}


def project(data_dir: str | Path, backend: str, *, rebuild: bool = False, key: str | None = None,
            config: dict[str, Any] | None = None, progress: Progress | None = None) -> ReplayReport:
    """Bring the ``backend`` view of the log in ``data_dir`` up to the log's end, or (``rebuild``) remake it.

    Resumable: without ``rebuild`` an interrupted run continues from the view's checkpoint. A
    rebuild uses the view's bulk path (``replay``) when it has one, else reset and replay.
    """
    from fabric.crypto_codec import StoreOpener  # noqa: PLC0415

    backends.check_backend(backend)
    path = Path(data_dir)
    log = EventLog(path, create=False)
    view: Any = None
    try:
        codec = StoreOpener(key).open(log)
        view = backends.open_view(backend, path, {"data_dir": str(path), **(config or {})})
        last = log.refresh()
        check = getattr(view, "check_log", None)
        if callable(check) and not rebuild:
            first = next(iter(log.read(1, 1)), None)
            log_id = getattr(codec.decode(first).event, "log_id", None) if first is not None else None
            check(log_id or None, last)
        start = 1 if rebuild else view.position() + 1
        t0 = time.perf_counter()

        def changes(begin: int) -> Iterator[Change]:
            for env in log.read(begin, last):
                yield codec.decode(env)

        def report(done: int, _seq: int) -> None:
            if progress is not None:
                progress(done, last - start + 1)

        replay = getattr(view, "replay", None)
        if start == 1 and callable(replay):
            position = int(replay(changes(1), report))
            applied = position
        else:
            if start == 1:
                view.reset()
            applied = 0
            batch: list[Change] = []
            for ch in changes(start):
                batch.append(ch)
                if len(batch) >= 4096:
                    view.apply(batch, batch[-1].seq)
                    applied += len(batch)
                    batch = []
                    report(applied, 0)
            if batch:
                view.apply(batch, batch[-1].seq)
                applied += len(batch)
            report(applied, 0)
            position = int(view.position())
        seconds = time.perf_counter() - t0
        db = getattr(view, "path", None)
        size = Path(db).stat().st_size if db is not None and Path(db).exists() else None
        return ReplayReport(backend=backend, events=applied, position=position, records=int(view.count()),
                            seconds=seconds, rebuilt=start == 1, view_bytes=size)
    finally:
        if view is not None:
            view.close()
        log.close()


# --- migrating ----------------------------------------------------------------------------------


@dataclass
class MigrationReport:
    source: str
    target: str
    data_dir: str
    target_data_dir: str
    copied: int  # records written to another store's log (0 on the same data_dir: the log is shared)
    skipped: int  # already in the target (a resumed run)
    replay: ReplayReport | None
    parity: ParityReport
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "data_dir": self.data_dir,
                "target_data_dir": self.target_data_dir, "copied": self.copied, "skipped": self.skipped,
                "replay": None if self.replay is None else self.replay.to_dict(),
                "parity": self.parity.to_dict(), "seconds": round(self.seconds, 3)}


def migrate(source_backend: str, target_backend: str, data_dir: str | Path, *,
            target_data_dir: str | Path | None = None, key: str | None = None,
            progress: Progress | None = None, batch: int = 1000) -> MigrationReport:
    """Make ``target_backend`` serve what ``source_backend`` serves, then check parity."""
    backends.check_backend(source_backend)
    backends.check_backend(target_backend)
    src_dir = Path(data_dir)
    dst_dir = Path(target_data_dir) if target_data_dir is not None else src_dir
    if not src_dir.is_dir():
        raise ConfigurationError(f"data_dir {str(src_dir)!r} does not exist")
    same = dst_dir.resolve() == src_dir.resolve()
    if same and source_backend == target_backend:
        raise ConfigurationError("source and target are the same backend on the same data_dir: nothing to migrate")
    t0 = time.perf_counter()
    copied = skipped = 0
    replay: ReplayReport | None = None
    if same:
        replay = project(src_dir, target_backend, key=key, progress=progress)
    source = MemoryFabric(backend=source_backend, config={"data_dir": str(src_dir)}, encryption_key=key)
    try:
        target = MemoryFabric(backend=target_backend, config={"data_dir": str(dst_dir)}, encryption_key=key)
        try:
            if not same:
                total = source.count()
                target.count()  # catch up, so what is already there is known
                pending: list[MemoryRecord] = []
                for rec in iter_records(source):
                    if target.view.get(rec.id) is not None:
                        skipped += 1
                    else:
                        pending.append(rec)
                    if len(pending) >= batch:
                        target.store_many(pending)
                        copied += len(pending)
                        pending = []
                    if progress is not None:
                        progress(copied + skipped, total)
                if pending:
                    target.store_many(pending)
                    copied += len(pending)
                target.flush()
                if progress is not None:
                    progress(copied + skipped, total)
            report = parity(source, target)
        finally:
            target.close()
    finally:
        source.close()
    return MigrationReport(source=source_backend, target=target_backend, data_dir=str(src_dir),
                           target_data_dir=str(dst_dir), copied=copied, skipped=skipped, replay=replay,
                           parity=report, seconds=time.perf_counter() - t0)
