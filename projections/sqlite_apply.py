"""Folding a batch of events into the SQLite tables: `fabric.state.evolve`, then the fewest writes.

One batch is read (the rows its events touch, in one query), folded in memory with the same
`evolve` every view uses, and written back: deleted rows, changed rows, then new rows in
creation order with explicit, increasing rowids, so ``ORDER BY rowid`` is creation order
(a record stored again moves to the end, as in the in-memory view). The caller owns the
transaction and writes the checkpoint in it: this module never commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

import msgspec

from fabric.events import StoreCreated
from fabric.state import Change, Record, evolve
from projections import sqlite_impact as impact
from projections.sqlite_schema import (
    INSERT_RECORD,
    SELECT_COLUMNS,
    UPDATE_RECORD,
    record_from_row,
    record_row,
    update_row,
)

_JSON: Final = msgspec.json.Encoder()

class IdFilter:
    """Which ids may have a row, for a load that starts from an empty table: a bitmap of id hashes.

    A bulk load stores mostly new ids; asking SQLite about each costs ~1 µs. False positives
    only cost that lookup, so 2^27 bits (16 MiB) are plenty.
    """

    BITS: Final = 1 << 27

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS >> 3)

    def add(self, record_id: str) -> None:
        h = hash(record_id) & (self.BITS - 1)
        self._bits[h >> 3] |= 1 << (h & 7)

    def __contains__(self, record_id: str) -> bool:
        h = hash(record_id) & (self.BITS - 1)
        return bool(self._bits[h >> 3] & (1 << (h & 7)))


def apply_batch(conn: sqlite3.Connection, changes: Sequence[Change], *, list_size: int,
                heads: bool = True, ids: IdFilter | None = None) -> None:
    """Fold ``changes`` into memory_records (and head-term lists when ``heads``), in the caller's transaction.

    ``ids``: the bulk load's record of ids it inserted; others are not looked up.
    """
    touched = list(dict.fromkeys(ch.id for ch in changes if ch.id))
    lookup = touched if ids is None else [i for i in touched if i in ids]
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

    if deletes:
        conn.executemany("DELETE FROM memory_records WHERE rowid = ?", [(rowid,) for rowid, _ in deletes])
    if updates:
        conn.executemany(UPDATE_RECORD, [update_row(rowid, new) for rowid, _, new in updates])
    placed: list[tuple[int, Record]] = []
    if inserts:
        inserts.sort(key=lambda r: r.created_seq)
        top = conn.execute("SELECT max(rowid) FROM memory_records").fetchone()[0] or 0
        placed = [(top + i, r) for i, r in enumerate(inserts, 1)]
        conn.executemany(INSERT_RECORD, [record_row(rowid, r) for rowid, r in placed])
        if ids is not None:
            for r in inserts:
                ids.add(r.id)

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
