"""The SQLite view (backend ``sqlite``): the log projected into ``data_dir/fabric.db`` (WAL + FTS5).

Exactly once: each `apply` folds a batch and moves the checkpoint in one transaction, after
checking the checkpoint inside it (another process may have applied the batch already), so
a crash between any two statements leaves the last committed batch and nothing else.

Threads and processes: one writer connection behind a lock; each reading thread has its own
connection (WAL: readers never block the writer, the writer never blocks readers); any
number of processes may share the file. Every process holds a shared ``flock`` on
``.fabric-sqlite.lock`` while its view is open; the fast rebuild (a new file renamed over
the old one) needs it exclusively, and otherwise rebuilds inside the live file.

Damage: a file that is not SQLite, a view of another log, a format from an older release,
or one that fails SQLite's checks on open is moved aside (``fabric.db.corrupt-<time>``,
never deleted) with a warning and rebuilt from the log; damage found later while reading is
a `ViewCorruptError`, and the next read starts that rebuild. sqlite3 errors never leave
this module untranslated.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from fabric.errors import ConfigurationError, ViewCorruptError, ViewError
from fabric.events import Forgotten, Stored
from fabric.query import Hit, Query
from fabric.state import Change, Record
from projections import sqlite_bulk, sqlite_search
from projections import sqlite_impact as impact
from projections.sqlite_apply import apply_batch
from projections.sqlite_schema import (
    CONNECTION_PRAGMAS,
    DB_NAME,
    LOCK_NAME,
    SCHEMA_VERSION,
    SELECT_COLUMNS,
    SQLITE_MAGIC,
    TABLES,
    TRIGGERS,
    record_from_row,
)

log = logging.getLogger("fabric.sqlite")

_REQUIRED: Final = frozenset({"memory_records", "memory_fts", "fabric_checkpoint", "fabric_meta",
                              "fabric_head_terms", "fabric_impact"})
_CORRUPT_CODES: Final = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_BUSY_CODES: Final = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
#: Run PRAGMA quick_check on open when the file is at most this big (``verify: auto``).
QUICK_CHECK_BYTES: Final = 256 * 1024 * 1024
#: A log at least this long is replayed into an empty view with the bulk path.
BULK_MIN_EVENTS: Final = 20_000


class _Damaged(Exception):
    """Internal: the file cannot be used as it is (reason in args[0])."""


def _code(e: sqlite3.Error) -> int:
    return int(getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_corrupt(e: BaseException) -> bool:
    if not isinstance(e, sqlite3.DatabaseError):
        return False
    text = str(e).lower()
    return _code(e) in _CORRUPT_CODES or "malformed" in text or "not a database" in text


class _Gate:
    """Reads share it; swapping the file takes it alone (no connection may outlive the file it opened)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._swapping = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._swapping = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._swapping = False
                self._cond.notify_all()


class SqliteView:
    """Records in ``memory_records``, text in ``memory_fts``, the log position in ``fabric_checkpoint``.

    ``config``: ``busy_timeout`` (s, default 30), ``verify`` (``auto``: quick_check files up to
    256 MiB on open; ``quick``, ``full`` or ``off``), ``head_df`` (records a term must be in
    before it gets an impact list, default 1000), ``impact_list_size`` (default 256).
    """

    name = "sqlite"
    eager = False

    def __init__(self, data_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None) -> None:
        config = dict(config or {})
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_NAME
        self.busy_timeout = float(config.get("busy_timeout", 30.0))
        self.verify = str(config.get("verify", "auto"))
        if self.verify not in ("auto", "quick", "full", "off"):
            raise ConfigurationError(f"unknown sqlite verify mode {self.verify!r}; use auto, quick, full or off")
        self.settings = sqlite_search.Settings(head_df=int(config.get("head_df", 1000)),
                                               list_size=int(config.get("impact_list_size", 256)))
        self.recovered: list[str] = []  # why the file was moved aside and rebuilt, if it was
        self._write_lock = threading.RLock()
        self._gate = _Gate()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._generation = 0
        self._damaged: str | None = None
        self._closed = False
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigurationError(f"cannot use data_dir {str(self.data_dir)!r}: {e.strerror or e}") from e
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        try:
            self._writer = self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise

    # --- files, connections, damage ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout)
        for pragma in CONNECTION_PRAGMAS:
            conn.execute(pragma)
        return conn

    def _open(self) -> sqlite3.Connection:
        """The writer connection to a usable file, moving a damaged one aside first."""
        try:
            return self._open_checked()
        except _Damaged as e:
            reason = str(e.args[0])
        if not self._try_exclusive():
            raise ViewCorruptError(f"the sqlite view {str(self.path)!r} is unusable ({reason}) and other processes "
                                   "have it open", hint="close them, then reopen: the view is rebuilt from the log")
        try:
            self._quarantine(reason)
            return self._open_checked()
        except OSError as e:
            raise ViewError(f"cannot move the unusable sqlite view {str(self.path)!r} aside: {e.strerror or e}") from e
        except _Damaged as e:
            raise ViewCorruptError(f"cannot create a usable sqlite view at {str(self.path)!r}: {e.args[0]}") from None
        finally:
            self._back_to_shared()

    def _open_checked(self) -> sqlite3.Connection:
        try:
            if self.path.exists() and self.path.stat().st_size > 0:
                with open(self.path, "rb") as f:
                    if f.read(16) != SQLITE_MAGIC:
                        raise _Damaged("not an SQLite database")
        except OSError as e:
            raise ViewError(f"cannot read {str(self.path)!r}: {e.strerror or e}") from e
        try:
            conn = self._connect()
        except sqlite3.Error as e:
            if _is_corrupt(e):
                raise _Damaged(str(e)) from None
            raise self._translate(e, "open") from e
        try:
            self._check_schema(conn)
            return conn
        except sqlite3.Error as e:
            conn.close()
            if _is_corrupt(e):
                raise _Damaged(str(e)) from None
            raise self._translate(e, "open") from e
        except BaseException:
            conn.close()
            raise

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}
                if version == 0:
                    if names:
                        raise _Damaged(f"not a Memory Fabric view (tables: {', '.join(sorted(names)[:5])})")
                    for ddl in (*TABLES, *TRIGGERS):
                        conn.execute(ddl)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return
        if version > SCHEMA_VERSION:
            raise ViewError(f"{str(self.path)!r} was written by a newer Memory Fabric (view format {version})",
                            hint="use that release, or delete fabric.db and it is rebuilt from the log")
        if version < SCHEMA_VERSION:
            raise _Damaged(f"view format {version} of an older release")
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        missing = _REQUIRED - names
        if missing:
            raise _Damaged(f"missing tables: {', '.join(sorted(missing))}")
        if conn.execute("SELECT count(*) FROM fabric_checkpoint").fetchone()[0] != 1:
            raise _Damaged("no checkpoint row")
        mode = self.verify
        if mode == "auto":
            mode = "quick" if self.path.stat().st_size <= QUICK_CHECK_BYTES else "off"
        if mode in ("quick", "full"):
            result = conn.execute("PRAGMA quick_check" if mode == "quick" else "PRAGMA integrity_check").fetchall()
            if [r[0] for r in result] != ["ok"]:
                raise _Damaged(f"{mode}_check: {result[0][0]}")
            if mode == "full":
                try:
                    conn.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES ('integrity-check', 1)")
                except sqlite3.DatabaseError as e:
                    raise _Damaged(f"full-text index: {e}") from None

    def _try_exclusive(self) -> bool:
        """Upgrade this process's lock; False (shared again) when another view is open anywhere."""
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)  # a failed conversion may have dropped the old lock
            return False

    def _back_to_shared(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_SH)

    def _quarantine(self, reason: str) -> None:
        """Move the unusable file (and its WAL) aside, keeping it for inspection; needs the exclusive lock."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, Path(f"{self.path}.corrupt-{stamp}{suffix}"))
        self.recovered.append(reason)
        log.warning("sqlite view %s was unusable (%s): moved aside to %s.corrupt-%s; rebuilding it from the log",
                    self.path, reason, self.path.name, stamp)

    def _translate(self, e: sqlite3.Error, what: str) -> ViewError:
        if _is_corrupt(e):
            self._damaged = str(e)
            return ViewCorruptError(f"the sqlite view {str(self.path)!r} is damaged ({what}: {e})",
                                    hint="the next read rebuilds it from the log, "
                                         "or run `fabric rebuild --view sqlite`")
        code = _code(e)
        if code in _BUSY_CODES:
            return ViewError(f"the sqlite view is busy ({what}: {e})",
                             hint="another process holds a long write; retry, or raise busy_timeout")
        if code == 13:
            return ViewError(f"the sqlite view cannot grow ({what}): disk full", hint="free disk space")
        return ViewError(f"sqlite view error ({what}): {e}")

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.generation == self._generation:
            return conn
        conn = self._connect()
        conn.execute("PRAGMA query_only = 1")
        conn.execute("PRAGMA mmap_size = 268435456")
        self._local.conn = conn
        self._local.generation = self._generation
        with self._readers_lock:
            self._readers.append(conn)
        return conn

    @contextlib.contextmanager
    def _read(self, what: str) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for one read on this thread's connection; errors translated."""
        self._check_usable()
        with self._gate.shared():
            conn = self._reader()
            try:
                conn.execute("BEGIN")
                yield conn
            except sqlite3.Error as e:
                raise self._translate(e, what) from e
            finally:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("COMMIT")

    def _check_usable(self) -> None:
        if self._closed:
            raise ViewError("the sqlite view is closed")

    def _recover_damage(self) -> None:
        """After damage was seen: start over from an empty file (the facade then replays the log)."""
        with self._write_lock:
            reason, self._damaged = self._damaged, None
            if reason is None:
                return
            if not self._try_exclusive():
                raise ViewCorruptError(f"the sqlite view {str(self.path)!r} is damaged ({reason}) and open elsewhere",
                                       hint="close the other processes, or run `fabric rebuild --view sqlite`")
            try:
                with self._gate.exclusive():
                    self._close_connections()
                    self._quarantine(reason)
                    self._writer = self._open_checked()
            except OSError as e:
                raise ViewError(f"cannot move the damaged sqlite view {str(self.path)!r} aside: "
                                f"{e.strerror or e}") from e
            except _Damaged as e:
                raise ViewCorruptError(f"cannot create a usable sqlite view at {str(self.path)!r}: "
                                       f"{e.args[0]}") from None
            finally:
                self._back_to_shared()

    def _close_connections(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._generation += 1
        with contextlib.suppress(sqlite3.Error):
            self._writer.close()

    # --- the projection protocol -------------------------------------------------------------

    def position(self) -> int:
        self._check_usable()
        if self._damaged is not None:
            self._recover_damage()
        with self._read("position") as conn:
            return int(conn.execute("SELECT position FROM fabric_checkpoint").fetchone()[0])

    def log_id(self) -> str | None:
        """Id of the log this view was built from (its first event), if it has seen it."""
        with self._read("log id") as conn:
            row = conn.execute("SELECT value FROM fabric_meta WHERE key = 'log_id'").fetchone()
            return None if row is None else str(row[0])

    def check_log(self, log_id: str | None, last_seq: int) -> None:
        """Called on open with the log's identity and length: a view of another log, or one ahead
        of this log (a log restored from an older copy), is emptied with a warning and rebuilt."""
        position = self.position()
        mine = self.log_id()
        reason = None
        if position > last_seq:
            reason = f"its checkpoint (seq {position}) is ahead of the log (seq {last_seq})"
        elif mine is not None and log_id is not None and mine != log_id:
            reason = f"it was built from another log ({mine}, this one is {log_id})"
        if reason is not None:
            log.warning("sqlite view %s: %s; rebuilding it from the log", self.path, reason)
            self.recovered.append(reason)
            self.reset()

    def apply(self, changes: Sequence[Change], position: int) -> None:
        self._check_usable()
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                done = int(conn.execute("SELECT position FROM fabric_checkpoint").fetchone()[0])
                todo = [ch for ch in changes if ch.seq > done]
                if position <= done or (todo and todo[0].seq != done + 1):
                    conn.execute("ROLLBACK")  # applied by another process already, or not our turn yet
                    return
                erase = _forgets_a_record(conn, todo)
                apply_batch(conn, todo, list_size=self.settings.list_size)
                if todo:
                    conn.execute("UPDATE fabric_checkpoint SET position = ?, ts = ?", (position, todo[-1].ts))
                else:
                    conn.execute("UPDATE fabric_checkpoint SET position = ?", (position,))
                conn.execute("COMMIT")
                if erase:
                    _erase_freed_text(conn)
            except sqlite3.Error as e:
                self._rollback(conn)
                raise self._translate(e, "apply") from e
            except BaseException:
                self._rollback(conn)
                raise

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def reset(self) -> None:
        self._check_usable()
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO memory_fts(memory_fts) VALUES ('delete-all')")
                for name in ("memory_records_ai", "memory_records_ad", "memory_records_au"):
                    conn.execute(f"DROP TRIGGER IF EXISTS {name}")
                for table in ("memory_records", "fabric_impact", "fabric_head_terms", "fabric_meta"):
                    conn.execute(f"DELETE FROM {table}")
                for ddl in TRIGGERS:
                    conn.execute(ddl)
                conn.execute("UPDATE fabric_checkpoint SET position = 0, ts = 0")
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback(conn)
                raise self._translate(e, "reset") from e

    def replay(self, changes: Iterable[Change], progress: Callable[[int, int], None] | None = None) -> int:
        """Rebuild from scratch out of ``changes`` (the whole log from seq 1) by the bulk path; return the position.

        All or nothing: interrupted, the view is as it was. With the view open nowhere else the
        new file is built beside the old and renamed over it; otherwise inside the live file.
        """
        self._check_usable()
        with self._write_lock:
            if self._try_exclusive():
                try:
                    tmp = Path(f"{self.path}.rebuild")
                    position, _ts = sqlite_bulk.load_new_file(
                        tmp, changes, list_size=self.settings.list_size, progress=progress)
                    with self._gate.exclusive():
                        self._close_connections()
                        for suffix in ("-wal", "-shm"):
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(f"{self.path}{suffix}")
                        os.replace(tmp, self.path)
                        fd = os.open(self.data_dir, os.O_RDONLY)
                        try:
                            os.fsync(fd)
                        finally:
                            os.close(fd)
                        self._writer = self._open_checked()
                    return position
                except sqlite3.Error as e:
                    raise self._translate(e, "rebuild") from e
                except OSError as e:
                    raise ViewError(f"cannot write the rebuilt sqlite view next to {str(self.path)!r}: "
                                    f"{e.strerror or e}", hint="check free space and permissions of data_dir") from e
                finally:
                    self._back_to_shared()
            try:
                position, _ts = sqlite_bulk.load_in_place(
                    self._writer, changes, list_size=self.settings.list_size, progress=progress)
            except sqlite3.Error as e:
                raise self._translate(e, "rebuild") from e
            return position

    # --- reads ---------------------------------------------------------------------------------

    def get(self, record_id: str) -> Record | None:
        with self._read("get") as conn:
            row = conn.execute(f"SELECT {SELECT_COLUMNS} FROM memory_records AS m WHERE m.id = ?",
                               (record_id,)).fetchone()
            return None if row is None else record_from_row(row)

    def count(self) -> int:
        with self._read("count") as conn:
            return impact.fts_stats(conn)[0]

    def list(self, limit: int | None, offset: int) -> builtins.list[Record]:
        with self._read("list") as conn:
            rows = conn.execute(f"SELECT {SELECT_COLUMNS} FROM memory_records AS m ORDER BY m.rowid LIMIT ? OFFSET ?",
                                (-1 if limit is None else limit, offset))
            return [record_from_row(r) for r in rows]

    def search(self, query: Query) -> builtins.list[Hit]:
        for _ in range(4):
            with self._read("search") as conn:
                out = sqlite_search.search(conn, query, self.settings)
            if out.build:
                try:
                    self._build_lists(out.build)
                except ViewError as e:  # e.g. another process holds a long write: answer without lists
                    if isinstance(e, ViewCorruptError):
                        raise
                    with self._read("search") as conn:
                        return sqlite_search.full(conn, query)
                continue
            if out.stale:
                with contextlib.suppress(ViewError):
                    self._build_lists(out.stale)
            return out.hits
        raise ViewError("search could not settle its head-term lists (the view keeps changing under it)")

    def search_route(self, query: Query) -> str:
        """Which route `search` takes for ``query`` (for tests and benchmarks)."""
        with self._read("search") as conn:
            return sqlite_search.search(conn, query, self.settings).route

    def _build_lists(self, terms: Iterable[str]) -> None:
        with self._write_lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                for term in terms:
                    impact.build(conn, term, self.settings.list_size)
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback(conn)
                raise self._translate(e, "head-term list") from e

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            self._close_connections()
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)

    def __repr__(self) -> str:
        return f"SqliteView({str(self.path)!r})"


def _forgets_a_record(conn: sqlite3.Connection, changes: Sequence[Change]) -> bool:
    """Does this batch forget (`Forgotten`) a record the view holds, or one the batch itself stores?"""
    ids = {ch.id for ch in changes if type(ch.event) is Forgotten}
    if not ids:
        return False
    if any(type(ch.event) is Stored and ch.id in ids for ch in changes):
        return True
    marks = ",".join("?" * len(ids))
    found = conn.execute(f"SELECT 1 FROM memory_records WHERE id IN ({marks}) LIMIT 1", tuple(ids)).fetchone()
    return found is not None


def _erase_freed_text(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """After a forget, no copy of the record's text may stay in the files: secure_delete (on for
    every connection) zeroed its rows; FTS5 keeps a deleted document's terms in older index
    segments until they merge, so 'optimize' merges them all; the WAL holds old page images until
    a TRUNCATE checkpoint, which has to wait for readers (of any process) to move on."""
    conn.execute("INSERT INTO memory_fts(memory_fts) VALUES ('optimize')")
    for _ in range(attempts):
        if not conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            return
        time.sleep(0.02)
    log.warning("readers kept the WAL busy: the forgotten text leaves %s-wal at its next checkpoint", DB_NAME)


def open_view(data_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> SqliteView:
    """Factory for the backend registry."""
    return SqliteView(data_dir, config)
