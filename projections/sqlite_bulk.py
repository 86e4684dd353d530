"""Rebuilding the SQLite view from the whole log, as fast as SQLite allows.

The bulk path: fold the log into rows with no per-row index upkeep (no triggers), then let
FTS5 build the whole full-text index at once (``'rebuild'``, with a large in-memory term
buffer so it writes few, large segments), then recreate the triggers and write the
checkpoint. Python's cyclic GC is paused meanwhile (millions of short-lived event objects
make it rescan the heap over and over, a third of the time otherwise), and ids never seen
before skip the lookup for an existing row.

Two ways, both all-or-nothing:

`load_new_file`  (nobody else has the view open) builds a complete file beside the live one
    with no journal and no fsync until the end; the view renames it over the old one.
    Interrupted, it leaves only a stale ``.rebuild`` file, removed by the next attempt.
`load_in_place`  (others have it open) does the same in one transaction of the live file,
    slower (WAL); readers see the old view until the commit.

Measured, not guessed: on this project's 2-vCPU machines a second thread (folding rows while
FTS5 indexes) gained nothing, the two cores do not scale for this work, so it is one thread.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Final

from fabric.state import Change
from projections.sqlite_apply import IdFilter, apply_batch
from projections.sqlite_schema import DROP_TRIGGERS, SCHEMA_VERSION, TABLES, TRIGGERS

BATCH: Final = 8192
#: FTS5 keeps this many bytes of new postings in memory before writing a segment (default 1 MiB).
BULK_HASHSIZE: Final = 256 * 1024 * 1024
DEFAULT_HASHSIZE: Final = 1024 * 1024
Progress = Callable[[int, int], None]  # (events applied so far, last seq)


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-journal"), Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load(conn: sqlite3.Connection, changes: Iterable[Change], list_size: int, progress: Progress | None,
          batch: int, ids: IdFilter | None) -> tuple[int, int, int]:
    """Rows for every change (no triggers), then the index; in the caller's transaction. (events, position, ts)."""
    done = position = ts = 0
    pending: list[Change] = []
    for ch in changes:
        pending.append(ch)
        if len(pending) >= batch:
            apply_batch(conn, pending, list_size=list_size, heads=False, ids=ids)
            done += len(pending)
            position, ts = pending[-1].seq, pending[-1].ts
            pending = []
            if progress is not None:
                progress(done, position)
    if pending:
        apply_batch(conn, pending, list_size=list_size, heads=False, ids=ids)
        done += len(pending)
        position, ts = pending[-1].seq, pending[-1].ts
    conn.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES ('hashsize', ?)", (BULK_HASHSIZE,))
    conn.execute("INSERT INTO memory_fts(memory_fts) VALUES ('rebuild')")
    conn.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES ('hashsize', ?)", (DEFAULT_HASHSIZE,))
    for ddl in TRIGGERS:
        conn.execute(ddl)
    conn.execute("UPDATE fabric_checkpoint SET position = ?, ts = ?", (position, ts))
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if progress is not None:
        progress(done, position)
    return done, position, ts


def load_new_file(path: Path, changes: Iterable[Change], *, list_size: int,
                  progress: Progress | None = None, batch: int = BATCH) -> tuple[int, int]:
    """Write a complete view of ``changes`` (the log from seq 1) to ``path``; return (position, ts)."""
    _remove(path)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        for pragma in ("PRAGMA journal_mode = OFF", "PRAGMA synchronous = OFF", "PRAGMA secure_delete = ON",
                       "PRAGMA temp_store = MEMORY", "PRAGMA cache_size = -262144",
                       "PRAGMA locking_mode = EXCLUSIVE"):
            conn.execute(pragma)
        with _no_gc():
            conn.execute("BEGIN")
            for ddl in TABLES:
                conn.execute(ddl)
            _, position, ts = _load(conn, changes, list_size, progress, batch, IdFilter())
            conn.execute("COMMIT")
        conn.execute("PRAGMA locking_mode = NORMAL")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.close()
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return position, ts
    except BaseException:
        conn.close()
        _remove(path)
        raise


def load_in_place(conn: sqlite3.Connection, changes: Iterable[Change], *, list_size: int,
                  progress: Progress | None = None, batch: int = BATCH) -> tuple[int, int]:
    """Replace the contents of a live view with ``changes`` (from seq 1) in one transaction; return (position, ts)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        with _no_gc():
            conn.execute("INSERT INTO memory_fts(memory_fts) VALUES ('delete-all')")
            for ddl in DROP_TRIGGERS:
                conn.execute(ddl)
            for table in ("memory_records", "fabric_impact", "fabric_head_terms", "fabric_meta"):
                conn.execute(f"DELETE FROM {table}")
            _, position, ts = _load(conn, changes, list_size, progress, batch, IdFilter())
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return position, ts
