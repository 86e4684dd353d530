"""Searching the SQLite view: the same answers as `fabric.query` defines, by the cheapest exact route.

Routes, chosen per query from the terms' record counts (df):

``light``    every term is in fewer than ``head_df`` records: FTS5 ``MATCH`` with the filters in
             SQL, ``bm25(memory_fts)`` as the score; at most ``head_df`` rows are ranked.
``mixed``    some terms are head terms (see `projections.sqlite_impact`), at least one is light:
             the matches are at most the light term's records; they are scored either by FTS5
             or, when FTS5's idf counting of a huge head term would cost more, in Python from
             their tokens, whichever is cheaper. Both give the same floats.
``intersect`` several head terms whose estimated intersection is small enough: rank it with
             FTS5 (pruning by per-word lists rarely proves an AND of mid-frequency words).
``pruned``   every term is a head term: score the listed records exactly, bound the rest;
             when the bound cannot prove the page, fall back to ``full`` FTS5 ranking.
no text      newest first (timestamp descending, then id) straight from the index.

FTS5 ranks without joining each match to its row: ids (for ties) and filters are looked
up for the best-scored rows only, a group of equal scores at a time (`fts_ranked`).

Ties and pages follow `fabric.query`: scores compared by `score_key`, then record id. The
user's text never reaches FTS5: MATCH is built from `Query.terms`, each quoted.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from fabric.query import Hit, Query, bm25_idf, bm25_term, document_tokens, score_key
from projections import sqlite_impact as impact
from projections.sqlite_filters import where_clause
from projections.sqlite_schema import SELECT_COLUMNS, TIME_INDEX, record_from_row

_JSON: Final = msgspec.json.Encoder()
#: Rough costs (seconds) that pick between FTS5 and Python scoring: per posting FTS5 walks to count
#: a term's records for its idf, per row it ranks, per record Python tokenizes.
COST_COUNT: Final = 25e-9
COST_FTS_ROW: Final = 0.7e-6
COST_PY_ROW: Final = 3.5e-6
INTERSECT_BUDGET: Final = 0.025  # s: rank an estimated intersection this cheap directly


@dataclass
class Settings:
    head_df: int = 1000
    list_size: int = 256


@dataclass
class Outcome:
    """What a search found, and what the view should do before asking again or after answering."""

    hits: list[Hit] = field(default_factory=list)
    build: list[str] = field(default_factory=list)  # head terms without a list: build, then search again
    stale: list[str] = field(default_factory=list)  # lists that could not prove a page: rebuild at leisure
    route: str = ""


def _records(conn: sqlite3.Connection, rowids: list[int]) -> dict[int, Any]:
    if not rowids:
        return {}
    rows = conn.execute(f"SELECT m.rowid, {SELECT_COLUMNS} FROM memory_records AS m "
                        "WHERE m.rowid IN (SELECT value FROM json_each(?))", (_JSON.encode(rowids).decode(),))
    return {r[0]: record_from_row(r[1:]) for r in rows}


def _page(conn: sqlite3.Connection, q: Query, ranked: list[tuple[float, str, int]]) -> list[Hit]:
    """``ranked``: (score_key, id, rowid), already in answer order; fetch the records of the requested page."""
    page = ranked[q.offset:q.offset + q.limit]
    recs = _records(conn, [r[2] for r in page])
    return [Hit(recs[rowid], key) for key, _id, rowid in page]


def _order(scored: list[tuple[float, str, int]]) -> list[tuple[float, str, int]]:
    scored.sort(key=lambda x: (-x[0], x[1]))
    return scored


def no_text(conn: sqlite3.Connection, q: Query) -> list[Hit]:
    params: list[Any] = []
    where = where_clause(q, "m", params)
    rows = conn.execute(f"SELECT {SELECT_COLUMNS} FROM memory_records AS m INDEXED BY {TIME_INDEX} WHERE {where} "
                        "ORDER BY m.timestamp DESC, m.id LIMIT ? OFFSET ?", (*params, q.limit, q.offset))
    return [Hit(record_from_row(r), 0.0) for r in rows]


def fts_ranked(conn: sqlite3.Connection, q: Query) -> list[tuple[float, str, int]]:
    """The matches with FTS5's bm25, in answer order, at least up to the requested page.

    Scores come from FTS5 alone; ids (for ties) and filters are looked up only for the best
    rows, a score group at a time, until the page is full: joining every match to its row
    costs more than ranking it (~2.5 µs a row at 1M records).
    """
    rows = conn.execute("SELECT -bm25(memory_fts), rowid FROM memory_fts WHERE memory_fts MATCH ?",
                        (impact.match_expr(q.terms),)).fetchall()
    scored = sorted(((score_key(s), rowid) for s, rowid in rows), key=lambda x: -x[0])
    return _resolve(conn, q, scored, q.offset + q.limit)


def _resolve(conn: sqlite3.Connection, q: Query, scored: list[tuple[float, int]],
             need: int) -> list[tuple[float, str, int]]:
    """(key, rowid) best first -> (key, id, rowid) in answer order, filtered, for the first ``need`` (whole ties)."""
    out: list[tuple[float, str, int]] = []
    params_tail: list[Any] = []
    where = where_clause(q, "m", params_tail)
    i = 0
    step = max(need, 64)
    while i < len(scored) and len(out) < need:
        j = min(len(scored), i + step)
        while j < len(scored) and scored[j][0] == scored[j - 1][0]:
            j += 1  # never split a group of equal scores: its order is by id
        chunk = scored[i:j]
        found = dict(conn.execute(
            "SELECT m.rowid, m.id FROM memory_records AS m "
            f"WHERE m.rowid IN (SELECT value FROM json_each(?)) AND {where}",
            (_JSON.encode([r for _k, r in chunk]).decode(), *params_tail)).fetchall())
        out.extend(_order([(k, found[r], r) for k, r in chunk if r in found]))
        i = j
        step *= 4
    return out


def _python_score(q: Query, idf: dict[str, float], avg: float, content: str, tag_text: str | None) -> float | None:
    """The score `projections.memory` computes, from the record's tokens; None if a term is missing."""
    toks = document_tokens(content, (tag_text,) if tag_text else ())
    tf = Counter(toks)
    dl = len(toks)
    s = 0.0
    for t in q.terms:
        n = tf.get(t, 0)
        if not n:
            return None
        s += bm25_term(idf[t], n, dl, avg)
    return s


def python_ranked(conn: sqlite3.Connection, q: Query, idf: dict[str, float],
                  avg: float) -> list[tuple[float, str, int]]:
    """Every match scored in Python from its tokens (cost: tokenizing each matching record)."""
    params: list[Any] = [impact.match_expr(dict.fromkeys(q.terms))]
    where = where_clause(q, "m", params)
    rows = conn.execute(
        "SELECT m.content, m.tag_text, m.id, f.rowid FROM memory_fts AS f JOIN memory_records AS m "
        f"ON m.rowid = f.rowid WHERE memory_fts MATCH ? AND {where}", params).fetchall()
    scored = []
    for content, tag_text, rid, rowid in rows:
        s = _python_score(q, idf, avg, content, tag_text)
        if s is not None:
            scored.append((score_key(s), rid, rowid))
    return _order(scored)


def _pruned(conn: sqlite3.Connection, q: Query, heads: dict[str, impact.HeadTerm], idf: dict[str, float],
            avg: float) -> list[tuple[float, str, int]] | None:
    """Answer from the impact lists if their bound proves the page exact; None otherwise."""
    unique = list(dict.fromkeys(q.terms))
    mult = Counter(q.terms)
    need = q.offset + q.limit
    params: list[Any] = [_JSON.encode(unique).decode()]
    where = where_clause(q, "m", params)
    rows = conn.execute(
        "SELECT i.term, i.rid, i.tf, i.dl, m.id FROM fabric_impact AS i JOIN memory_records AS m ON m.rowid = i.rid "
        f"WHERE i.term IN (SELECT value FROM json_each(?)) AND {where}", params).fetchall()
    found: dict[int, tuple[str, int, dict[str, int]]] = {}
    for term, rowid, tf, dl, rid in rows:
        entry = found.get(rowid)
        if entry is None:
            entry = found[rowid] = (rid, dl, {})
        entry[2][term] = tf
    scored: list[tuple[float, str, int]] = []
    partial: list[int] = []
    for rowid, (rid, dl, tfs) in found.items():
        if len(tfs) < len(unique):
            partial.append(rowid)
            continue
        s = 0.0
        for t in q.terms:
            s += bm25_term(idf[t], tfs[t], dl, avg)
        scored.append((score_key(s), rid, rowid))
    if partial:  # listed for some terms only: their other counts come from their tokens
        got = conn.execute("SELECT m.rowid, m.id, m.content, m.tag_text FROM memory_records AS m "
                           "WHERE m.rowid IN (SELECT value FROM json_each(?))", (_JSON.encode(partial).decode(),))
        for rowid, rid, content, tag_text in got:
            s2 = _python_score(q, idf, avg, content, tag_text)
            if s2 is not None:
                scored.append((score_key(s2), rid, rowid))
    _order(scored)
    if all(h.complete for h in heads.values()):
        return scored
    if len(scored) < need:
        return None
    key_k, id_k = scored[need - 1][0], scored[need - 1][1]
    if len(unique) == 1:
        h = heads[unique[0]]
        b_below, b_theta = impact.unlisted_bound(h, idf[h.term], avg)
        m = mult[h.term] * (1.0 + impact.SLACK)
        if score_key(b_below * m) >= key_k:
            return None
        kb = score_key(b_theta * m)
        if kb < key_k or (kb == key_k and id_k <= h.theta_id):
            return scored
        return None
    bound = 0.0
    for t in unique:
        bound += mult[t] * max(impact.unlisted_bound(heads[t], idf[t], avg))
    if score_key(bound * (1.0 + impact.SLACK)) < key_k:
        return scored
    return None


def search(conn: sqlite3.Connection, q: Query, settings: Settings) -> Outcome:
    """Run ``q`` on a connection inside a read transaction."""
    if not q.terms:
        return Outcome(no_text(conn, q), route="no text")
    n, total = impact.fts_stats(conn)
    if n == 0:
        return Outcome(route="empty")
    avg = total / n
    unique = list(dict.fromkeys(q.terms))
    heads = impact.load(conn, unique)
    df: dict[str, int] = {}
    for t in unique:
        h = heads.get(t)
        if h is not None:
            df[t] = h.df
        else:
            df[t] = conn.execute("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH ?",
                                 (impact.quote_term(t),)).fetchone()[0]
        if df[t] == 0:
            return Outcome(route="no match")
    build = [t for t in unique if t not in heads and df[t] >= settings.head_df]
    if build:
        return Outcome(build=build)
    idf = {t: bm25_idf(n, df[t]) for t in unique}
    if not heads:
        return Outcome(_page(conn, q, fts_ranked(conn, q)), route="light")
    light = [t for t in unique if t not in heads]
    if light:
        est = min(df[t] for t in light)
        fts_cost = COST_COUNT * sum(df.values()) + COST_FTS_ROW * est
        if fts_cost <= COST_PY_ROW * est:
            return Outcome(_page(conn, q, fts_ranked(conn, q)), route="mixed/fts")
        return Outcome(_page(conn, q, python_ranked(conn, q, idf, avg)), route="mixed/python")
    if len(unique) > 1:  # a small intersection is cheaper to rank whole than to prune
        dfs = sorted(df.values())
        inter = float(dfs[0])
        for d in dfs[1:]:
            inter *= d / n
        fts_cost = COST_COUNT * sum(dfs) + COST_FTS_ROW * inter
        # AND of mid-frequency words: ranking the intersection beats pruning, whose bound on unlisted
        # records (the sum of each word's cut) rarely proves a page; only huge intersections try it.
        if fts_cost < max(COST_PY_ROW * settings.list_size * len(unique), INTERSECT_BUDGET):
            return Outcome(_page(conn, q, fts_ranked(conn, q)), route="intersect")
    ranked = _pruned(conn, q, heads, idf, avg)
    if ranked is not None:
        return Outcome(_page(conn, q, ranked), route="pruned")
    stale = [h.term for h in heads.values()
             if h.size < settings.list_size // 2 or abs(avg / h.avg_b - 1.0) > 0.2]
    return Outcome(_page(conn, q, fts_ranked(conn, q)), stale=stale, route="full")


def full(conn: sqlite3.Connection, q: Query) -> list[Hit]:
    """Rank every match with FTS5 (no lists): always right, slow for words in many records."""
    if not q.terms:
        return no_text(conn, q)
    return _page(conn, q, fts_ranked(conn, q))
