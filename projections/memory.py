"""The in-memory view (backend ``local_jsonl``): a dict of records and an inverted index.

Rebuilt from the log on open; applying is a dict update, so the facade applies its own
appends at once (``eager``) and reads never wait. The full-text index is brought up to
date lazily, by the next search: tokenizing is most of the cost of a write, and a bulk
load or a cold open should not pay it record by record when nobody searches meanwhile.
"""

from __future__ import annotations

import builtins
import itertools
from collections import Counter
import threading
from collections.abc import Sequence

import msgspec

from fabric.query import Hit, Query, bm25_idf, bm25_term, document_tokens, evaluate, score_key
from fabric.state import Change, Record, evolve

_META = msgspec.json.Decoder(dict)


class MemoryView:
    name = "memory"
    eager = True

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._records: dict[str, Record] = {}
            self._indexed: dict[str, Record] = {}  # the version of each record the index holds
            self._dirty: set[str] = set()  # ids whose record changed since the index last saw them
            self._postings: dict[str, dict[str, int]] = {}
            self._lengths: dict[str, int] = {}
            self._total_len = 0
            self._position = 0

    def position(self) -> int:
        return self._position

    def apply(self, changes: Sequence[Change], position: int) -> None:
        with self._lock:
            records = self._records
            dirty = self._dirty
            for ch in changes:
                rid = ch.id
                if not rid:
                    continue
                old = records.get(rid)
                new = evolve(old, ch.event, id=rid, seq=ch.seq, ts=ch.ts)
                if new is old:
                    continue
                if new is None:
                    del records[rid]
                    dirty.add(rid)
                    continue
                if old is not None and new.created_seq != old.created_seq:
                    del records[rid]  # re-created: moves to the end of creation order
                records[rid] = new
                if old is None or old.content != new.content or old.tags != new.tags:
                    dirty.add(rid)
            if position > self._position:
                self._position = position

    def _refresh_index(self) -> None:
        """Bring the inverted index up to date with the records (called by search, under the lock)."""
        if not self._dirty:
            return
        records, indexed = self._records, self._indexed
        for rid in self._dirty:
            old = indexed.pop(rid, None)
            new = records.get(rid)
            if old is not None:
                if new is not None and old.content == new.content and old.tags == new.tags:
                    indexed[rid] = new
                    continue
                self._unindex(old)
            if new is not None:
                self._index(new)
                indexed[rid] = new
        self._dirty.clear()

    def _index(self, rec: Record) -> None:
        toks = document_tokens(rec.content, rec.tags)
        postings = self._postings
        rid = rec.id
        for t, n in Counter(toks).items():
            p = postings.get(t)
            if p is None:
                postings[t] = {rid: n}
            else:
                p[rid] = n
        self._lengths[rid] = len(toks)
        self._total_len += len(toks)

    def _unindex(self, rec: Record) -> None:
        rid = rec.id
        for t in set(document_tokens(rec.content, rec.tags)):
            p = self._postings.get(t)
            if p is not None:
                p.pop(rid, None)
                if not p:
                    del self._postings[t]
        self._total_len -= self._lengths.pop(rid, 0)

    # --- reads ------------------------------------------------------------------------

    def get(self, record_id: str) -> Record | None:
        return self._records.get(record_id)

    def count(self) -> int:
        return len(self._records)

    def list(self, limit: int | None, offset: int) -> builtins.list[Record]:
        with self._lock:
            stop = None if limit is None else offset + limit
            return list(itertools.islice(self._records.values(), offset, stop))

    def _passes(self, rec: Record, q: Query) -> bool:
        if q.memory_type is not None and rec.memory_type != q.memory_type:
            return False
        if q.storage_tier is not None and rec.storage_tier != q.storage_tier:
            return False
        if q.tags and not all(t in rec.tags for t in q.tags):
            return False
        if q.where is not None and not evaluate(q.where, _META.decode(rec.metadata)):
            return False
        return True

    def search(self, q: Query) -> builtins.list[Hit]:
        with self._lock:
            self._refresh_index()
            if not q.terms:
                recs = [r for r in self._records.values() if self._passes(r, q)]
                recs.sort(key=lambda r: r.id)
                recs.sort(key=lambda r: r.timestamp, reverse=True)
                return [Hit(r, 0.0) for r in recs[q.offset:q.offset + q.limit]]
            postings = self._postings
            unique = sorted(set(q.terms), key=lambda t: len(postings.get(t, ())))
            first = postings.get(unique[0])
            if not first:
                return []
            candidates = set(first)
            for t in unique[1:]:
                p = postings.get(t)
                if not p:
                    return []
                candidates.intersection_update(p)
                if not candidates:
                    return []
            n_docs = len(self._records)
            avg = self._total_len / n_docs if n_docs else 1.0
            idf = {t: bm25_idf(n_docs, len(postings[t])) for t in unique}
            scored: builtins.list[tuple[float, str, Record]] = []
            for rid in candidates:
                rec = self._records[rid]
                if not self._passes(rec, q):
                    continue
                dl = self._lengths[rid]
                s = 0.0
                for t in q.terms:
                    s += bm25_term(idf[t], postings[t][rid], dl, avg)
                scored.append((-score_key(s), rid, rec))
            scored.sort(key=lambda x: (x[0], x[1]))
            return [Hit(rec, -neg) for neg, _rid, rec in scored[q.offset:q.offset + q.limit]]

    def close(self) -> None:
        pass


def open_view(data_dir: object, config: object) -> MemoryView:
    """Factory for the backend registry; the in-memory view keeps nothing on disk."""
    return MemoryView()
