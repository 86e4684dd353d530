"""Random stores, random queries: every backend gives the in-memory view's answer, ids and scores, in order.

Hypothesis draws records (words from a small vocabulary, so words repeat and tie; some
Unicode; tags; typed metadata), then updates and deletes some, then asks random queries
with random filters and pages. Failing examples print their seed (``--hypothesis-seed``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from conftest import REFERENCE, FabricFactory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric.fabric import MemoryFabric

WORDS = ["the", "fox", "dog", "café", "CAFE", "zürich", "东京", "run", "runs", "a", "b", "c", "dark", "mode",
         "x1", "Ελλάδα", "naïve", "quick"]
TAGS = ["t1", "t2", "two words", "café", "x-y"]
USERS = ["u1", "u2", "u3"]

words = st.lists(st.sampled_from(WORDS), min_size=0, max_size=12).map(" ".join)
metadata = st.fixed_dictionaries({}, optional={
    "user": st.sampled_from(USERS),
    "n": st.one_of(st.integers(-3, 3), st.floats(-3, 3, allow_nan=False).map(lambda f: round(f, 1)), st.booleans(),
                   st.none(), st.sampled_from(["1", "a"])),
    "list": st.lists(st.one_of(st.integers(0, 2), st.sampled_from(["a", "b"]), st.booleans()), max_size=3),
    "deep": st.fixed_dictionaries({}, optional={"k": st.integers(0, 2), "s": st.sampled_from(["p", "q"])}),
})
record = st.fixed_dictionaries({
    "content": words,
    "tags": st.lists(st.sampled_from(TAGS), max_size=2, unique=True),
    "memory_type": st.sampled_from(["conversation", "knowledge", "context"]),
    "storage_tier": st.sampled_from(["hot", "cold"]),
    "metadata": metadata,
    "timestamp": st.integers(1_700_000_000, 1_700_000_005),  # seconds: many equal timestamps
})
scalar = st.one_of(st.sampled_from(USERS), st.integers(-3, 3), st.booleans(), st.none(), st.just("a"))
leaf = st.one_of(
    st.builds(lambda v: {"user": v}, st.sampled_from([*USERS, "zz"])),
    st.builds(lambda op, v: {"n": {op: v}}, st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
              st.one_of(st.integers(-3, 3), st.just("1"), st.just(0.5))),
    st.builds(lambda v: {"n": {"$eq": v}}, scalar),
    st.builds(lambda vs: {"n": {"$in": vs}}, st.lists(scalar, max_size=3)),
    st.builds(lambda vs: {"user": {"$nin": vs}}, st.lists(st.sampled_from(USERS), max_size=2)),
    st.builds(lambda v: {"list": {"$contains": v}},
              st.one_of(st.integers(0, 2), st.sampled_from(["a", "b"]), st.booleans())),
    st.builds(lambda b: {"deep.k": {"$exists": b}}, st.booleans()),
    st.builds(lambda v: {"deep.s": v}, st.sampled_from(["p", "q"])),
)
flt = st.recursive(leaf, lambda inner: st.one_of(
    st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda x: {"$not": x}, inner),
), max_leaves=4)
query = st.fixed_dictionaries({
    "text": st.one_of(st.just(""), st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)),
    "limit": st.integers(0, 12),
    "offset": st.integers(0, 10),
}, optional={
    "memory_type": st.sampled_from(["conversation", "knowledge"]),
    "storage_tier": st.sampled_from(["hot", "cold"]),
    "tags": st.lists(st.sampled_from(TAGS), min_size=1, max_size=2),
    "where": flt,
})
edits = st.lists(st.tuples(st.sampled_from(["update", "delete", "restore"]), st.integers(0, 200), words), max_size=8)


def _answers(fabric: MemoryFabric, queries: list[dict[str, Any]]) -> list[list[tuple[str, float]]]:
    out = []
    for q in queries:
        kw = dict(q)
        text, limit = kw.pop("text"), kw.pop("limit")
        out.append([(h.record.id, h.score) for h in fabric.search_hits(text, limit, **kw)])
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(record, min_size=1, max_size=40), changes=edits,
       queries=st.lists(query, min_size=1, max_size=8))
def test_same_answers_as_the_reference(make_fabric: FabricFactory, backend: str, records: list[dict[str, Any]],
                                       changes: list[tuple[str, int, str]], queries: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        fabric = make_fabric(Path(tmp), backend)
        ids = fabric.store_many([{**r, "record_id": f"r{i:03d}"} for i, r in enumerate(records)])
        for kind, pick, text in changes:
            rid = ids[pick % len(ids)]
            if kind == "update" and fabric.retrieve(rid) is not None:
                fabric.update(rid, content=text)
            elif kind == "delete":
                fabric.delete(rid)
            elif kind == "restore" and fabric.retrieve(rid) is None:
                fabric.store(text, record_id=rid, tags=["t1"])
        fabric.flush()
        want = _answers(make_fabric(Path(tmp), REFERENCE), queries)
        assert _answers(fabric, queries) == want
        reopened = make_fabric(Path(tmp), backend)
        assert _answers(reopened, queries) == want
