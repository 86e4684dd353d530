"""Random sequences of operations against a plain dict model.

Valid and invalid calls are mixed: an invalid one must raise and change nothing (the log's
last seq and bytes stay the same). After every step, and after close + reopen, the fabric
must hold exactly what the model holds: ids in creation order, contents, metadata, tags,
types, tiers and access counts.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import segment_files
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fabric import MemoryFabric
from fabric.errors import DuplicateRecordError, InvalidInputError, RecordNotFoundError

IDS = st.sampled_from(["a", "b", "c", "d", "e", "ü-1", "x y"])
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
SCALAR = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False,
                                                                               width=32) | TEXT
META = st.dictionaries(TEXT, SCALAR | st.lists(SCALAR, max_size=3), max_size=3)
TAGS = st.lists(TEXT, max_size=3)
TYPES = st.sampled_from(["conversation", "knowledge", "context", "metadata"])
TIERS = st.sampled_from(["hot", "cold", "auto"])

#: (argument, bad value) pairs: each makes a store or update invalid
BAD = st.sampled_from([
    ("content", 42), ("content", None), ("content", "lone \ud800"),
    ("metadata", "not a dict"), ("metadata", {"n": float("nan")}), ("metadata", {1: "x"}), ("metadata", {"s": {1}}),
    ("metadata", {"b": b"x"}),
    ("tags", "tag"), ("tags", [1]),
    ("memory_type", "nope"), ("storage_tier", "warm"),
])


@dataclass
class Rec:
    content: str
    metadata: dict[str, Any]
    tags: list[str]
    memory_type: str
    storage_tier: str
    access_count: int = 0


@dataclass
class Model:
    records: dict[str, Rec] = field(default_factory=dict)


class FabricMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="fabric-prop-"))
        self.model = Model()
        self.fabric = self._open()
        self.generated: list[str] = []

    def _open(self) -> MemoryFabric:
        return MemoryFabric(config={"data_dir": str(self.dir), "durability": "none", "segment_bytes": 2048})

    def teardown(self) -> None:
        try:
            self.fabric.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers -----------------------------------------------------------------------

    def _log_state(self) -> tuple[int, bytes]:
        return self.fabric.log.refresh(), b"".join(p.read_bytes() for p in segment_files(self.dir))

    def _refused(self, error: type[BaseException], call: Any) -> None:
        before = self._log_state()
        try:
            call()
        except error:
            pass
        else:
            raise AssertionError(f"expected {error.__name__}")
        assert self._log_state() == before, "a refused call wrote to the log"

    def _known_ids(self) -> list[str]:
        return list(self.model.records)

    # --- rules -------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        print(f"store in {self.dir}")

    @rule(rid=IDS | st.none(), content=TEXT, metadata=META, tags=TAGS, memory_type=TYPES, storage_tier=TIERS)
    def store(self, rid: str | None, content: str, metadata: dict[str, Any], tags: list[str], memory_type: str,
              storage_tier: str) -> None:
        if rid is not None and rid in self.model.records:
            self._refused(DuplicateRecordError,
                          lambda: self.fabric.store(content, metadata, tags, memory_type, storage_tier, rid))
            return
        got = self.fabric.store(content, metadata, tags, memory_type, storage_tier, rid)
        if rid is not None:
            assert got == rid
        else:
            self.generated.append(got)
        self.model.records[got] = Rec(content, metadata, list(tags), memory_type, storage_tier)

    @rule(bad=BAD, rid=IDS | st.none())
    def store_invalid(self, bad: tuple[str, Any], rid: str | None) -> None:
        kwargs: dict[str, Any] = {"content": "fine", "record_id": rid}
        kwargs[bad[0]] = bad[1]
        self._refused(InvalidInputError, lambda: self.fabric.store(**kwargs))

    @rule(items=st.lists(st.tuples(IDS | st.none(), TEXT, TAGS, TYPES), max_size=4),
          bad=st.none() | BAD, where=st.integers(0, 4))
    def store_many(self, items: list[tuple[str | None, str, list[str], str]], bad: tuple[str, Any] | None,
                   where: int) -> None:
        batch: list[dict[str, Any]] = [
            {"content": c, "tags": t, "memory_type": m, **({"record_id": r} if r is not None else {})}
            for r, c, t, m in items
        ]
        explicit = [r for r, *_ in items if r is not None]
        invalid = (bad is not None or len(set(explicit)) != len(explicit)
                   or any(r in self.model.records for r in explicit))
        if bad is not None:
            item = {"content": "fine"}
            item[bad[0]] = bad[1]
            batch.insert(min(where, len(batch)), item)
        if invalid:
            self._refused(InvalidInputError, lambda: self.fabric.store_many(batch))
            return
        got = self.fabric.store_many(batch)
        assert len(got) == len(batch)
        for rid, item in zip(got, batch, strict=True):
            if "record_id" in item:
                assert rid == item["record_id"]
            self.model.records[rid] = Rec(item["content"], {}, list(item["tags"]), item["memory_type"], "hot")

    @rule(rid=IDS, content=st.none() | TEXT, metadata=st.none() | META, tags=st.none() | TAGS,
          memory_type=st.none() | TYPES)
    def update(self, rid: str, content: str | None, metadata: dict[str, Any] | None, tags: list[str] | None,
               memory_type: str | None) -> None:
        changes = {k: v for k, v in {"content": content, "metadata": metadata, "tags": tags,
                                      "memory_type": memory_type}.items() if v is not None}
        if not changes:  # nothing to change is refused, whether or not the record exists
            self._refused(InvalidInputError, lambda: self.fabric.update(rid))
            return
        if rid not in self.model.records:
            self._refused(RecordNotFoundError, lambda: self.fabric.update(rid, **changes))
            return
        self.fabric.update(rid, **changes)
        rec = self.model.records[rid]
        for k, v in changes.items():
            setattr(rec, k, list(v) if k == "tags" else v)

    @precondition(lambda self: bool(self.model.records))
    @rule(data=st.data(), bad=BAD)
    def update_invalid(self, data: st.DataObject, bad: tuple[str, Any]) -> None:
        rid = data.draw(st.sampled_from(self._known_ids()))
        self._refused(InvalidInputError, lambda: self.fabric.update(rid, **{bad[0]: bad[1]}))

    @rule(rid=IDS)
    def delete(self, rid: str) -> None:
        expected = rid in self.model.records
        if not expected:
            self._refused(_Never, lambda: _expect_false(self.fabric.delete(rid)))
            return
        assert self.fabric.delete(rid) is True
        del self.model.records[rid]

    @rule(rid=IDS)
    def retrieve(self, rid: str) -> None:
        rec = self.fabric.retrieve(rid)
        if rid not in self.model.records:
            assert rec is None
            return
        model = self.model.records[rid]
        model.access_count += 1
        assert rec is not None and rec.content == model.content and rec.access_count == model.access_count

    @precondition(lambda self: bool(self.generated))
    @rule(data=st.data())
    def retrieve_generated(self, data: st.DataObject) -> None:
        self.retrieve(data.draw(st.sampled_from(self.generated)))

    @rule()
    def flush(self) -> None:
        self.fabric.flush()

    @rule()
    def reopen(self) -> None:
        self.fabric.close()
        self.fabric = self._open()
        self.check_equal()

    # --- the invariant -----------------------------------------------------------------

    @invariant()
    def check_equal(self) -> None:
        listed = self.fabric.list_all()
        assert [r.id for r in listed] == list(self.model.records), "ids or creation order differ"
        for rec in listed:
            model = self.model.records[rec.id]
            assert rec.content == model.content
            assert rec.metadata == model.metadata
            assert rec.tags == model.tags
            assert rec.memory_type.value == model.memory_type
            assert rec.storage_tier.value == model.storage_tier
            assert rec.access_count == model.access_count
        assert self.fabric.count() == len(self.model.records)


class _Never(Exception):
    pass


def _expect_false(value: bool) -> None:
    assert value is False
    raise _Never


FabricMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestFabricAgainstModel = FabricMachine.TestCase
