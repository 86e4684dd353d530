"""The SQLite view's on-disk format: tables, triggers, pragmas, and records <-> rows.

The seed's tables, column for column (``memory_records``, ``memory_fts``), so tools written
for the seed's database still read ours; after the seed's columns, ``memory_records`` has
the fold's bookkeeping (``created_seq``, ``seq``, ``updated``) and ``tag_text``, the tags as
FTS5 must see them (joined by spaces: the JSON text would add tokens for its escapes).
``memory_fts`` reads content through the ``memory_fts_source`` view (FTS5 columns are
matched by name, and ours are ``content`` and ``tags``). Triggers keep the index in step
with the rows; the bulk load drops them, loads, and builds the index in one go.

Timestamps are fixed-width ISO-8601 UTC text (``2025-01-31T12:00:00.000123Z``), so text
order is time order; tags, metadata and embeddings are JSON text.

``PRAGMA user_version`` holds `SCHEMA_VERSION`; a file from an older release is rebuilt,
one from a newer release is refused (rebuilding it would fight that release).
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from fabric.events import Embedding
from fabric.state import SCHEMA_VERSION as RECORD_SCHEMA_VERSION
from fabric.state import Record

log = logging.getLogger("fabric.sqlite")

#: Version of this file format; bump it when tables change (older files are then rebuilt).
SCHEMA_VERSION: Final = 1
DB_NAME: Final = "fabric.db"
LOCK_NAME: Final = ".fabric-sqlite.lock"
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
TOKENIZER: Final = "unicode61 remove_diacritics 2"

#: Columns of memory_records in the order rows are written and read.
COLUMNS: Final = ("id", "content", "metadata", "timestamp", "tags", "storage_tier", "memory_type",
                  "access_count", "last_accessed", "embedding", "schema_version",
                  "created_seq", "seq", "updated", "tag_text")
SELECT_COLUMNS: Final = ", ".join(f"m.{c}" for c in COLUMNS[:-1])
INSERT_RECORD: Final = (f"INSERT INTO memory_records(rowid, {', '.join(COLUMNS)}) "
                        f"VALUES (?{', ?' * len(COLUMNS)})")
UPDATE_RECORD: Final = ("UPDATE memory_records SET " + ", ".join(f"{c} = ?" for c in COLUMNS[1:])
                        + " WHERE rowid = ?")

#: Newest-first reads walk this index backwards (ties in time are sorted by id as they come).
TIME_INDEX: Final = "memory_records_by_time"

TABLES: Final = (
    """CREATE TABLE memory_records (
        id TEXT PRIMARY KEY,
        content TEXT NOT NULL,
        metadata TEXT,
        timestamp TEXT NOT NULL,
        tags TEXT,
        storage_tier TEXT NOT NULL,
        memory_type TEXT NOT NULL,
        access_count INTEGER DEFAULT 0,
        last_accessed TEXT,
        embedding TEXT,
        schema_version TEXT NOT NULL,
        created_seq INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        tag_text TEXT
    )""",
    f"CREATE INDEX {TIME_INDEX} ON memory_records(timestamp)",
    "CREATE VIEW memory_fts_source AS SELECT rowid AS rid, content, tag_text AS tags FROM memory_records",
    f"""CREATE VIRTUAL TABLE memory_fts USING fts5(
        content, tags, content='memory_fts_source', content_rowid='rid', tokenize='{TOKENIZER}')""",
    """CREATE TABLE fabric_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1), position INTEGER NOT NULL, ts INTEGER NOT NULL)""",
    "INSERT INTO fabric_checkpoint VALUES (1, 0, 0)",
    "CREATE TABLE fabric_meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    # Head terms (found in many records) and, per term, the records that can rank first: see sqlite_impact.
    """CREATE TABLE fabric_head_terms (
        term TEXT PRIMARY KEY, df INTEGER NOT NULL, n_b INTEGER NOT NULL, avg_b REAL NOT NULL,
        idf_b REAL NOT NULL, theta REAL NOT NULL, theta_id TEXT NOT NULL, below REAL,
        size INTEGER NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE fabric_impact (
        term TEXT NOT NULL, rid INTEGER NOT NULL, tf INTEGER NOT NULL, dl INTEGER NOT NULL,
        PRIMARY KEY (term, rid)) WITHOUT ROWID""",
)

TRIGGERS: Final = (
    """CREATE TRIGGER IF NOT EXISTS memory_records_ai AFTER INSERT ON memory_records BEGIN
        INSERT INTO memory_fts(rowid, content, tags) VALUES (new.rowid, new.content, new.tag_text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS memory_records_ad AFTER DELETE ON memory_records BEGIN
        INSERT INTO memory_fts(memory_fts, rowid, content, tags)
            VALUES ('delete', old.rowid, old.content, old.tag_text);
    END""",
    """CREATE TRIGGER IF NOT EXISTS memory_records_au AFTER UPDATE OF content, tag_text ON memory_records
        WHEN old.content IS NOT new.content OR old.tag_text IS NOT new.tag_text BEGIN
        INSERT INTO memory_fts(memory_fts, rowid, content, tags)
            VALUES ('delete', old.rowid, old.content, old.tag_text);
        INSERT INTO memory_fts(rowid, content, tags) VALUES (new.rowid, new.content, new.tag_text);
    END""",
)
DROP_TRIGGERS: Final = tuple(f"DROP TRIGGER IF EXISTS {n}" for n in
                             ("memory_records_ai", "memory_records_ad", "memory_records_au"))

#: Pragmas of every connection. secure_delete: SQLite zeroes what it deletes, so text a record
#: had (a forgotten record, an old version of an updated one) does not linger in free space.
CONNECTION_PRAGMAS: Final = (
    "PRAGMA synchronous = NORMAL",  # in WAL: a commit survives kill -9; a power cut may lose the last ones
    "PRAGMA secure_delete = ON",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA foreign_keys = OFF",
)

FTS_SHADOW_TABLES: Final = ("memory_fts_data", "memory_fts_idx", "memory_fts_docsize", "memory_fts_config")

# --- values ---------------------------------------------------------------------------

_TAGS_ENC: Final = msgspec.json.Encoder()
_TAGS_DEC: Final = msgspec.json.Decoder(list[str])
_EMB_DEC: Final = msgspec.json.Decoder(Embedding)
_MIN_US: Final = calendar.timegm((1, 1, 1, 0, 0, 0)) * 1_000_000
_MAX_US: Final = (calendar.timegm((9999, 12, 31, 23, 59, 59)) + 1) * 1_000_000 - 1
_SECOND_TEXT: dict[int, str] = {}
_TEXT_SECOND: dict[str, int] = {}


def iso_from_us(us: int) -> str:
    """Fixed-width ISO-8601 UTC text of µs since the epoch (years 1..9999; others are clamped, with a warning)."""
    if not _MIN_US <= us <= _MAX_US:
        log.warning("timestamp %d µs is outside years 1..9999; the sqlite view stores it clamped", us)
        us = min(max(us, _MIN_US), _MAX_US)
    sec, micro = divmod(us, 1_000_000)
    head = _SECOND_TEXT.get(sec)
    if head is None:
        if len(_SECOND_TEXT) > 4096:
            _SECOND_TEXT.clear()
        t = time.gmtime(sec)
        head = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
        _SECOND_TEXT[sec] = head
    return f"{head}.{micro:06d}Z"


def us_from_iso(text: str) -> int:
    """Inverse of `iso_from_us`."""
    head = text[:19]
    sec = _TEXT_SECOND.get(head)
    if sec is None:
        if len(_TEXT_SECOND) > 4096:
            _TEXT_SECOND.clear()
        sec = calendar.timegm((int(head[0:4]), int(head[5:7]), int(head[8:10]),
                               int(head[11:13]), int(head[14:16]), int(head[17:19])))
        _TEXT_SECOND[head] = sec
    return sec * 1_000_000 + int(text[20:26])


def tag_text(tags: tuple[str, ...]) -> str | None:
    """What FTS5 indexes for the tags: they joined by spaces tokenize as `fabric.query.document_tokens` says."""
    return " ".join(tags) if tags else None


def record_row(rowid: int, r: Record) -> tuple[Any, ...]:
    """The memory_records row (rowid first) of a record."""
    return (
        rowid, r.id, r.content, r.metadata.decode("utf-8"), iso_from_us(r.timestamp),
        _TAGS_ENC.encode(r.tags).decode("utf-8"), r.storage_tier, r.memory_type, r.access_count,
        None if r.last_accessed is None else iso_from_us(r.last_accessed),
        None if r.embedding is None else _TAGS_ENC.encode(r.embedding).decode("utf-8"),
        RECORD_SCHEMA_VERSION, r.created_seq, r.seq, r.updated, tag_text(r.tags),
    )


def update_row(rowid: int, r: Record) -> tuple[Any, ...]:
    """Parameters of `UPDATE_RECORD` for a record that keeps its row."""
    row = record_row(rowid, r)
    return (*row[2:], rowid)


def record_from_row(row: Sequence[Any]) -> Record:
    """A `Record` from the columns of `SELECT_COLUMNS` (in that order)."""
    (id_, content, metadata, timestamp, tags, storage_tier, memory_type, access_count, last_accessed,
     embedding, _schema, created_seq, seq, updated) = row
    return Record(
        id=id_,
        content=content,
        metadata=metadata.encode("utf-8") if metadata is not None else b"{}",
        tags=tuple(_TAGS_DEC.decode(tags)) if tags else (),
        memory_type=memory_type,
        storage_tier=storage_tier,
        timestamp=us_from_iso(timestamp),
        access_count=access_count or 0,
        last_accessed=None if last_accessed is None else us_from_iso(last_accessed),
        embedding=None if embedding is None else _EMB_DEC.decode(embedding),
        created_seq=created_seq,
        seq=seq,
        updated=updated,
    )

