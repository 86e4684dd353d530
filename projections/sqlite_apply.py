"""Folding a batch of events into the SQLite tables: `fabric.state.evolve`, then the fewest writes.

One batch is read (the rows its events touch, in one query), folded in memory with the same
`evolve` every view uses, and written back: deleted rows, changed rows, then new rows in
creation order with explicit, increasing rowids, so ``ORDER BY rowid`` is creation order
(a record stored again moves to the end, as in the in-memory view). The caller owns the
transaction and writes the checkpoint in it: this module never commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Final

import msgspec

from fabric.events import StoreCreated
from fabric.state import Change, Record, evolve
from projections import sqlite_impact as impact
from projections.sqlite_schema import (
    COLUMNS,
    INSERT_RECORD,
    SELECT_COLUMNS,
    UPDATE_RECORD,
    record_from_row,
    record_row,
    update_row,
)

_JSON: Final = msgspec.json.Encoder()

def _staged(conn: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]], statement: str) -> None:
    """Write many rows with ONE statement on memory_records, from a temp table.

    Why: FTS5 flushes its pending terms at every statement savepoint, and a statement whose
    triggers write to it opens one; row-by-row statements made each indexed row a segment
    write (~30 µs a row instead of ~5).
    """
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (rid INTEGER, {', '.join(COLUMNS)})")
    conn.executemany(f"INSERT INTO temp.{table} VALUES (?{', ?' * len(COLUMNS)})", rows)
    conn.execute(statement)
    conn.execute(f"DELETE FROM temp.{table}")


INSERT_STAGED: Final = (f"INSERT INTO main.memory_records(rowid, {', '.join(COLUMNS)}) "
                        f"SELECT rid, {', '.join(COLUMNS)} FROM temp.fabric_ins ORDER BY rid")
UPDATE_STAGED: Final = ("UPDATE main.memory_records SET " + ", ".join(f"{c} = u.{c}" for c in COLUMNS[1:])
                        + " FROM temp.fabric_upd AS u WHERE main.memory_records.rowid = u.rid")


class IdFilter:
    """Which ids may have a row, for a load that starts from an empty table: the hashes of those inserted.

    A bulk load stores mostly new ids; asking SQLite about each costs ~1 µs. A hash collision
    only costs that lookup. Set operations run in C, so the filter costs ~0.2 µs an event.
    """

    def __init__(self) -> None:
        self._hashes: set[int] = set()

    def add_all(self, record_ids: Iterable[str]) -> None:
        self._hashes.update(map(hash, record_ids))

    def maybe(self, record_ids: list[str]) -> list[str]:
        """The ids that may already have a row (in order)."""
        hit = self._hashes.intersection(map(hash, record_ids))
        return [i for i in record_ids if hash(i) in hit] if hit else []


def apply_batch(conn: sqlite3.Connection, changes: Sequence[Change], *, list_size: int,
                heads: bool = True, ids: IdFilter | None = None) -> None:
    """Fold ``changes`` into memory_records (and head-term lists when ``heads``), in the caller's transaction.

    ``ids``: the bulk load's record of ids it inserted; others are not looked up.
    """
    touched = list(dict.fromkeys(ch.id for ch in changes if ch.id))
    lookup = touched if ids is None else ids.maybe(touched)
    existing: dict[str, tuple[int, Record]] = {}
    if lookup:
        rows = conn.execute(f"SELECT m.rowid, {SELECT_COLUMNS} FROM memory_records AS m "
                            "WHERE m.id IN (SELECT value FROM json_each(?))", (_JSON.encode(lookup).decode(),))
        for row in rows:
            rec = record_from_row(row[1:])
            existing[rec.id] = (row[0], rec)
    state: dict[str, Record | None] = {}
    for ch in changes:
        rid = ch.id
        if not rid:
            if isinstance(ch.event, StoreCreated) and ch.event.log_id:
                conn.execute("INSERT OR IGNORE INTO fabric_meta VALUES ('log_id', ?)", (ch.event.log_id,))
            continue
        if rid in state:
            cur = state[rid]
        else:
            known = existing.get(rid)
            cur = known[1] if known is not None else None
        state[rid] = evolve(cur, ch.event, id=rid, seq=ch.seq, ts=ch.ts)

    deletes: list[tuple[int, Record]] = []
    updates: list[tuple[int, Record, Record]] = []
    inserts: list[Record] = []
    for rid, new in state.items():
        prev = existing.get(rid)
        if new is None:
            if prev is not None:
                deletes.append(prev)
        elif prev is None:
            inserts.append(new)
        elif new.created_seq != prev[1].created_seq:
            deletes.append(prev)
            inserts.append(new)
        elif new != prev[1]:
            updates.append((prev[0], prev[1], new))

    direct = ids is not None  # the bulk load has no triggers: plain statements are cheapest
    if deletes:
        if direct:
            conn.executemany("DELETE FROM memory_records WHERE rowid = ?", [(rowid,) for rowid, _ in deletes])
        else:
            conn.execute("DELETE FROM memory_records WHERE rowid IN (SELECT value FROM json_each(?))",
                         (_JSON.encode([rowid for rowid, _ in deletes]).decode(),))
    if updates:
        if direct:
            conn.executemany(UPDATE_RECORD, [update_row(rowid, new) for rowid, _, new in updates])
        else:
            _staged(conn, "fabric_upd", [record_row(rowid, new) for rowid, _, new in updates], UPDATE_STAGED)
    placed: list[tuple[int, Record]] = []
    if inserts:
        inserts.sort(key=lambda r: r.created_seq)
        top = conn.execute("SELECT max(rowid) FROM memory_records").fetchone()[0] or 0
        placed = [(top + i, r) for i, r in enumerate(inserts, 1)]
        new_rows = [record_row(rowid, r) for rowid, r in placed]
        if direct:
            conn.executemany(INSERT_RECORD, new_rows)
            assert ids is not None
            ids.add_all(r.id for r in inserts)
        else:
            _staged(conn, "fabric_ins", new_rows, INSERT_STAGED)

    if heads:
        sides: list[tuple[impact.Side | None, impact.Side | None]] = []
        for rowid, old in deletes:
            sides.append(((rowid, old.id, old.content, old.tags), None))
        for rowid, old, new in updates:
            if old.content != new.content or old.tags != new.tags:
                sides.append(((rowid, old.id, old.content, old.tags), (rowid, new.id, new.content, new.tags)))
        for rowid, new in placed:
            sides.append((None, (rowid, new.id, new.content, new.tags)))
        if sides:
            impact.maintain(conn, sides, list_size)
