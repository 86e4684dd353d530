"""Top-k pruning for words in many records: per-term impact lists with a provable bound.

Why: FTS5 ranks by computing ``bm25()`` for every matching row, ~0.6 µs each, so a word in
a million records costs ~0.6 s per query, and even counting its records for the idf costs
~25 ms. For such *head terms* (in at least ``head_df`` records) the view keeps, in the same
transactions as the rows:

- ``fabric_head_terms``: the term's record count (``df``, kept exact by `maintain`) and the
  cut of its list, made at build time with ``n_b`` records, average length ``avg_b`` and
  ``idf_b``: ``theta`` (a build-time score), ``theta_id`` and ``below``;
- ``fabric_impact``: the records that may rank first for the term, with its count ``tf``
  in them and their length ``dl``.

Invariant, with ``s(r) = bm25_term(idf_b, tf, dl, avg_b)`` (the score the record had, or
would have had, at build time): a record holding the term but not listed has
``s(r) <= below``, or ``s(r) == theta`` and an id greater than ``theta_id``. Every write
keeps it (`maintain` lists a new record unless the invariant already covers it), so a
search scores the listed records exactly with today's statistics and bounds all others
with `bound` (today's average length may differ from ``avg_b``; the bound allows for it).
When the bound cannot prove that no unlisted record could enter the page, the search falls
back to full FTS5 ranking: answers are always exact, pruning only makes them fast.

``s(r)`` is computed by the same float operations FTS5's ``bm25()`` uses, so build-time
scores from FTS5 and apply-time scores from Python are the same numbers.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from fabric.query import BM25_K1, bm25_idf, bm25_term, document_tokens

#: Float slack on bounds computed in a different order than the scores they bound.
SLACK: Final = 1e-12
_K1P1: Final = BM25_K1 + 1.0
_JSON: Final = msgspec.json.Encoder()


@dataclass
class HeadTerm:
    term: str
    df: int
    n_b: int
    avg_b: float
    idf_b: float
    theta: float
    theta_id: str
    below: float | None
    size: int

    @property
    def complete(self) -> bool:
        """Every record holding the term is listed."""
        return self.below is None and self.theta == 0.0

    def excluded(self, s: float, record_id: str) -> bool:
        """Does the invariant already cover a record with build-time score ``s`` (so it need not be listed)?"""
        if self.below is not None and s <= self.below:
            return True
        return s == self.theta and record_id > self.theta_id

    def listed(self, tf: int, dl: int, record_id: str) -> bool:
        """Must a record holding the term ``tf`` times in ``dl`` tokens be listed? Mostly an integer compare."""
        if dl > self._longest(tf):
            return False  # its score is <= below
        return not self.excluded(bm25_term(self.idf_b, tf, dl, self.avg_b), record_id)

    def _longest(self, tf: int) -> int:
        """Largest length whose build-time score with ``tf`` is above ``below`` (scores fall as length grows)."""
        cache: dict[int, int] = self.__dict__.setdefault("_longest_cache", {})
        got = cache.get(tf)
        if got is not None:
            return got
        if self.below is None:
            got = 1 << 62
        else:
            lo, hi = -1, 1 << 24  # invariant: score(lo) > below (lo = -1: none), score(hi) <= below
            if bm25_term(self.idf_b, tf, hi, self.avg_b) > self.below:
                lo = hi = 1 << 62
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if bm25_term(self.idf_b, tf, mid, self.avg_b) > self.below:
                    lo = mid
                else:
                    hi = mid
            got = lo
        cache[tf] = got
        return got


def quote_term(term: str) -> str:
    """An FTS5 string for one token: double-quoted, so it is never query syntax."""
    return '"' + term.replace('"', '""') + '"'


def match_expr(terms: Iterable[str]) -> str:
    """FTS5 MATCH text for "every term" (implicit AND), terms quoted; repeats kept (bm25 counts them)."""
    return " ".join(quote_term(t) for t in terms)


def _varints(blob: bytes) -> list[int]:
    """SQLite varints (FTS5's averages record)."""
    out = []
    i = 0
    n = len(blob)
    while i < n:
        v = 0
        for k in range(9):
            b = blob[i]
            i += 1
            if k == 8:
                v = (v << 8) | b
                break
            v = (v << 7) | (b & 0x7F)
            if b < 0x80:
                break
        out.append(v)
    return out


def fts_stats(conn: sqlite3.Connection) -> tuple[int, int]:
    """(records, tokens) in the FTS5 index, from its averages record (what bm25() uses). Committed state only."""
    row = conn.execute("SELECT block FROM memory_fts_data WHERE id = 1").fetchone()
    if row is None or not row[0]:
        return 0, 0
    vals = _varints(bytes(row[0]))
    return vals[0], sum(vals[1:])


def load(conn: sqlite3.Connection, terms: Iterable[str] | None = None) -> dict[str, HeadTerm]:
    cols = "term, df, n_b, avg_b, idf_b, theta, theta_id, below, size"
    if terms is None:
        rows = conn.execute(f"SELECT {cols} FROM fabric_head_terms").fetchall()
    else:
        rows = conn.execute(f"SELECT {cols} FROM fabric_head_terms WHERE term IN (SELECT value FROM json_each(?))",
                            (_json_list(terms),)).fetchall()
    return {r[0]: HeadTerm(*r) for r in rows}


def _json_list(values: Iterable[Any]) -> str:
    return _JSON.encode(list(values)).decode()


def _save(conn: sqlite3.Connection, h: HeadTerm) -> None:
    conn.execute("INSERT OR REPLACE INTO fabric_head_terms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (h.term, h.df, h.n_b, h.avg_b, h.idf_b, h.theta, h.theta_id, h.below, h.size))


# --- keeping lists exact on every write --------------------------------------------------


Side = tuple[int, str, str, tuple[str, ...]]  # (rowid, record id, content, tags) of one version of a record


def maintain(conn: sqlite3.Connection, changes: Sequence[tuple[Side | None, Side | None]], list_size: int) -> None:
    """Fold record changes (old version, new version) into df counts and lists, inside the caller's transaction."""
    heads = load(conn)
    if not heads:
        return
    df_delta: Counter[str] = Counter()
    size_delta: Counter[str] = Counter()
    head_names = heads.keys()
    for old, new in changes:
        if old is not None and new is not None and old[0] == new[0] and old[2] == new[2] and old[3] == new[3]:
            continue
        if old is not None:
            for t in head_names & set(document_tokens(old[2], old[3])):
                df_delta[t] -= 1
                cur = conn.execute("DELETE FROM fabric_impact WHERE term = ? AND rid = ?", (t, old[0]))
                size_delta[t] -= cur.rowcount
        if new is not None:
            toks = document_tokens(new[2], new[3])
            dl = len(toks)
            counts = Counter(toks)
            for t in head_names & counts.keys():
                df_delta[t] += 1
                tf = counts[t]
                if heads[t].listed(tf, dl, new[1]):
                    conn.execute("INSERT OR REPLACE INTO fabric_impact VALUES (?, ?, ?, ?)", (t, new[0], tf, dl))
                    size_delta[t] += 1
    for t in set(df_delta) | set(size_delta):
        h = heads[t]
        h.df += df_delta[t]
        h.size += size_delta[t]
        _save(conn, h)
        if h.size > 2 * list_size and not h.complete:
            trim(conn, h, list_size)


def _scored_list(conn: sqlite3.Connection, h: HeadTerm) -> list[tuple[float, str, int, int, int]]:
    rows = conn.execute(
        "SELECT i.rid, i.tf, i.dl, m.id FROM fabric_impact AS i JOIN memory_records AS m ON m.rowid = i.rid "
        "WHERE i.term = ?", (h.term,)).fetchall()
    out = [(bm25_term(h.idf_b, tf, dl, h.avg_b), rid_text, rid, tf, dl) for rid, tf, dl, rid_text in rows]
    out.sort(key=lambda x: x[1])
    out.sort(key=lambda x: x[0], reverse=True)
    return out


def trim(conn: sqlite3.Connection, h: HeadTerm, list_size: int) -> None:
    """Cut a grown list back to ``list_size`` records, moving the cut up (never down: that breaks the invariant)."""
    rows = _scored_list(conn, h)
    if len(rows) <= list_size:
        return
    theta, theta_id = rows[list_size - 1][0], rows[list_size - 1][1]
    if theta < h.theta:
        return
    dropped = rows[list_size:]
    below = h.below
    lower = [s for s, *_ in dropped if s < theta]
    if lower:
        below = max(lower) if below is None else max(below, max(lower))
    if theta > h.theta and h.theta > 0.0:
        below = h.theta if below is None else max(below, h.theta)  # the old cut's unlisted records
    conn.executemany("DELETE FROM fabric_impact WHERE term = ? AND rid = ?", [(h.term, r[2]) for r in dropped])
    h.theta, h.theta_id, h.below, h.size = theta, theta_id, below, list_size
    _save(conn, h)


# --- building a list -------------------------------------------------------------------------


def build(conn: sqlite3.Connection, term: str, list_size: int) -> HeadTerm:
    """(Re)build the list of ``term`` from FTS5, inside the caller's write transaction; cost ~ one full bm25 ranking."""
    n, total = fts_stats(conn)
    match = quote_term(term)
    df = conn.execute("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH ?", (match,)).fetchone()[0]
    avg = total / n if n else 1.0
    idf = bm25_idf(n, df)
    # Best first by (score, id): FTS5's score is idf * h with the same floats as bm25_term(idf, ...).
    extra = 64
    rows = conn.execute(
        "SELECT f.rowid, -bm25(memory_fts), m.id, m.content, m.tag_text FROM memory_fts AS f "
        "JOIN memory_records AS m ON m.rowid = f.rowid WHERE memory_fts MATCH ? "
        "ORDER BY bm25(memory_fts), m.id LIMIT ?", (match, list_size + extra)).fetchall()
    listed = rows[:list_size]
    if len(rows) <= list_size:
        theta, theta_id, below = 0.0, "", None
    else:
        theta, theta_id = listed[-1][1], listed[-1][2]
        below = next((r[1] for r in rows[list_size:] if r[1] < theta), None)
        if below is None:  # one huge group of equal scores: find the best score under it
            nxt = conn.execute(
                "SELECT -bm25(memory_fts) FROM memory_fts WHERE memory_fts MATCH ? AND -bm25(memory_fts) < ? "
                "ORDER BY bm25(memory_fts) LIMIT 1", (match, theta)).fetchone()
            below = nxt[0] if nxt is not None else None  # None: every unlisted record ties with theta
    entries = []
    for rid, _s, _id, content, tag_text in listed:
        toks = document_tokens(content, (tag_text,) if tag_text else ())
        entries.append((term, rid, toks.count(term), len(toks)))
    conn.execute("DELETE FROM fabric_impact WHERE term = ?", (term,))
    conn.executemany("INSERT INTO fabric_impact VALUES (?, ?, ?, ?)", entries)
    h = HeadTerm(term, df, n, avg, idf, theta, theta_id, below, len(entries))
    _save(conn, h)
    return h


# --- the bound --------------------------------------------------------------------------------


def _grow(x: float, r: float) -> float:
    """Largest ``h`` (bm25 without idf) today of a record whose build-time ``h`` was at most ``x``.

    ``r = min(1, avg_b / avg_now)``: lengths weigh less when the average grew. Derived from
    h = (k1+1) tf / (tf + k1 (1-b) + k1 b dl/avg): the excluded region is a half-plane in
    (tf, dl/avg_b); its supremum under avg_now is reached as tf grows without bound.
    """
    if x <= 0.0:
        return 0.0
    if x >= _K1P1:
        return _K1P1
    return _K1P1 / (1.0 + r * (_K1P1 - x) / x)


def unlisted_bound(h: HeadTerm, idf_now: float, avg_now: float) -> tuple[float, float]:
    """Upper bounds of today's score of unlisted records: (those under ``below``, those tied at ``theta``)."""
    r = min(1.0, h.avg_b / avg_now) if avg_now > 0 else 1.0
    up = 1.0 + SLACK
    b_below = 0.0 if h.below is None else idf_now * _grow(h.below / h.idf_b * up, r) * up
    b_theta = 0.0 if h.theta <= 0.0 else idf_now * _grow(h.theta / h.idf_b * up, r) * up
    return b_below, b_theta

