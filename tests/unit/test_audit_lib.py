"""fabric.audit and fabric.audit_report: times, filters, tag tracking, histories with diffs, snapshots, the page.

Stores are real (MemoryFabric on tmp_path); the library reads their logs back.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import segment_files

from fabric import MemoryFabric
from fabric.audit import (
    AuditSource,
    EventFilter,
    apply_to_view,
    describe,
    event_dict,
    first_seq_at,
    open_source,
    parse_point,
    parse_time,
    record_history,
    select,
    select_from_log,
    snapshot,
    word_diff,
)
from fabric.audit_report import collect, render
from fabric.backends import open_view
from fabric.errors import ConfigurationError, InvalidInputError

NOW = 1_800_000_000_000_000  # µs


def test_parse_time_iso_and_ages() -> None:
    assert parse_time("2026-11-25T10:00:00Z") == int(datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp() * 1e6)
    assert parse_time("2026-11-25T10:00:00") == parse_time("2026-11-25T10:00:00+00:00")  # no zone: UTC
    assert parse_time("2026-11-25T11:00:00+01:00") == parse_time("2026-11-25T10:00:00Z")
    assert parse_time("2026-11-25") == parse_time("2026-11-25T00:00:00Z")
    assert parse_time("10m", now=NOW) == NOW - 600_000_000
    assert parse_time("2h", now=NOW) == NOW - 7_200_000_000
    assert parse_time("1d", now=NOW) == NOW - 86_400_000_000
    assert parse_time("90s ago", now=NOW) == NOW - 90_000_000
    assert parse_time("1.5h", now=NOW) == NOW - 5_400_000_000
    assert parse_time("now", now=NOW) == NOW
    for bad in ("", "yesterday", "10 parsecs", "2026-13-40"):
        with pytest.raises(InvalidInputError):
            parse_time(bad)


def test_parse_point_number_is_a_seq_else_a_time() -> None:
    assert parse_point("120") == (120, None)
    seq, ts = parse_point("2026-11-25T10:00:00Z")
    assert seq is None and ts == parse_time("2026-11-25T10:00:00Z")


def test_filter_rejects_impossible_ranges() -> None:
    with pytest.raises(InvalidInputError):
        EventFilter(from_seq=0)
    with pytest.raises(InvalidInputError):
        EventFilter(from_seq=10, to_seq=5)
    with pytest.raises(InvalidInputError):
        EventFilter(since=10, until=5)
    assert EventFilter(to_seq=9, until=5).is_prefix and not EventFilter(types=frozenset({"stored"})).is_prefix


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A store with two writers, updates, a delete, a forget and tags moving around."""
    d = tmp_path / "store"
    ids: dict[str, str] = {}
    with MemoryFabric(config={"data_dir": str(d), "writer": "alice"}) as a, \
            MemoryFabric(config={"data_dir": str(d), "writer": "bob"}) as b:
        ids["x"] = a.store("Dana prefers dark mode in every editor.", {"user": "dana"}, ["prefs"], "knowledge")
        ids["y"] = b.store("Sam runs marathons.", {"user": "sam"}, ["health"])
        b.update(ids["y"], tags=["health", "prefs"])  # y gains the tag
        a.update(ids["x"], content="Dana prefers light mode in the afternoon.", metadata={"user": "dana", "v": 2})
        ids["z"] = a.store("Temporary note <script>alert(1)</script>", tags=["prefs"])
        a.delete(ids["z"])
        b.update(ids["y"], tags=["health"])  # y loses it
        ids["w"] = b.store("Passport number X123", tags=["prefs"])
        b.forget(ids["w"], reason="user request")
        a.retrieve(ids["x"])
        a.flush()
    yield d, ids


def _seqs(src: AuditSource, flt: EventFilter) -> list[int]:
    return [env.seq for env in select_from_log(src.log, flt, src.decode)]


def test_select_by_type_id_writer_and_seq(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    with open_source(d) as src:
        every = list(src.log.read(1))
        by_type = [e.seq for e in every if e.type in ("updated", "deleted")]
        assert _seqs(src, EventFilter(types=frozenset({"updated", "deleted"}))) == by_type
        assert _seqs(src, EventFilter(ids=frozenset({ids["x"]}))) == [e.seq for e in every if e.id == ids["x"]]
        assert _seqs(src, EventFilter(writers=frozenset({"bob"}))) == [e.seq for e in every if e.writer == "bob"]
        assert _seqs(src, EventFilter(from_seq=3, to_seq=5)) == [3, 4, 5]
        middle = every[4].ts
        assert _seqs(src, EventFilter(since=middle)) == [e.seq for e in every if e.ts >= middle]
        assert _seqs(src, EventFilter(until=middle)) == [e.seq for e in every if e.ts <= middle]


def test_tag_filter_follows_tags_as_they_change(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    with open_source(d) as src:
        got = [(env.id, env.type) for env in select_from_log(src.log, EventFilter(tag="prefs"), src.decode)]
    x, y, z, w = ids["x"], ids["y"], ids["z"], ids["w"]
    assert (x, "stored") in got and (x, "updated") in got and (x, "accessed") in got
    assert (y, "updated") in got  # the update that added the tag, and the one that removed it
    assert [t for i, t in got if i == y] == ["updated", "updated"]  # not its stored (no tag then)
    assert [t for i, t in got if i == z] == ["stored", "deleted"]
    assert w not in {i for i, _ in got}  # its tags were erased with it: a forgotten record is not findable by tag
    with pytest.raises(InvalidInputError):
        list(select([], EventFilter(tag="x")))  # a tag filter needs a decoder


def test_first_seq_at_skips_old_segments(tmp_path: Path) -> None:
    d = tmp_path / "s"
    with MemoryFabric(config={"data_dir": str(d), "segment_bytes": 1024}) as f:
        for i in range(60):
            f.store(f"record {i} " + "x" * 40)
    with open_source(d) as src:
        every = list(src.log.read(1))
        target = every[45]
        start = first_seq_at(src.log, target.ts)
        assert 1 < start <= target.seq  # a later segment, never past the event
        assert start in src.log.segments()
        assert first_seq_at(src.log, 0) == 1
    assert len(segment_files(d)) > 3


def test_history_diffs_fields_and_content(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    with open_source(d) as src:
        versions = record_history(src, ids["x"])
        assert record_history(src, "never-there") == []
    assert [v.type for v in versions] == ["stored", "updated", "accessed"]
    first, second, third = versions
    assert first.record is not None and first.record.content.startswith("Dana prefers dark")
    assert second.content_diff[2:] == ["@@ -1 +1 @@", "-Dana prefers dark mode in every editor.",
                                       "+Dana prefers light mode in the afternoon."]
    assert ("-", "dark") in second.word_diff and ("+", "light") in second.word_diff
    assert {(c.field, c.old, c.new) for c in second.changes} == {("metadata.v", None, 2)}
    assert [(c.field, c.old, c.new) for c in third.changes] == [("access_count", 0, 1)]
    assert second.to_dict()["record"]["content"] == "Dana prefers light mode in the afternoon."


def test_history_of_a_forgotten_record_keeps_that_it_happened(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    with open_source(d) as src:
        versions = record_history(src, ids["w"])
    assert [v.type for v in versions] == ["stored", "forgotten"]
    assert versions[0].erased and versions[0].record is None  # the payload is gone, not shown
    assert versions[1].reason == "user request"


def test_word_diff_round_trips() -> None:
    old, new = "the quick brown fox", "the slow brown dog jumps"
    ops = word_diff(old, new)
    assert "".join(t for op, t in ops if op != "+") == old
    assert "".join(t for op, t in ops if op != "-") == new


def test_snapshot_brings_back_deleted_not_forgotten(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    with open_source(d) as src:
        every = list(src.log.read(1))
        after_z = next(e.seq for e in every if e.id == ids["z"] and e.type == "stored")
        then = snapshot(src, seq=after_z)
        assert then.retrieve(ids["z"]) is not None
        assert then.retrieve(ids["x"]).content == "Dana prefers light mode in the afternoon."
        now = snapshot(src)
        assert now.retrieve(ids["z"]) is None and now.retrieve(ids["w"]) is None
        by_time = snapshot(src, ts=every[1].ts)
        assert by_time.count() == 1 and by_time.position == 2
        assert [h.record.id for h in then.search_hits("dark mode")] == []
        old = snapshot(src, seq=2)
        assert [h.record.id for h in old.search_hits("dark mode")] == [ids["x"]]
        with pytest.raises(InvalidInputError):
            snapshot(src, seq=-1)


def test_apply_to_view_is_exactly_once(store: tuple[Path, dict[str, str]]) -> None:
    d, _ = store
    with open_source(d) as src:
        view = open_view("local_jsonl", d, {})
        changes = [src.decode(e) for e in src.log.read(1)]
        applied, position = apply_to_view(view, changes[:5], batch=2)
        assert (applied, position) == (5, 5)
        applied, position = apply_to_view(view, changes, batch=3)  # the first five are skipped
        assert (applied, position) == (len(changes) - 5, changes[-1].seq)


def test_describe_and_event_dict(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    with open_source(d) as src:
        lines = {(e.id, e.type): (e, src.decode(e)) for e in src.log.read(1)}
    env, ch = lines[(ids["x"], "stored")]
    assert describe(ch, env) == "knowledge [prefs]: 'Dana prefers dark mode in every editor.'"
    env, ch = lines[(ids["x"], "updated")]
    assert describe(ch, env).startswith("changed content, metadata")
    env, ch = lines[(ids["w"], "stored")]
    assert describe(ch, env).startswith("erased")
    out = event_dict(env, ch)
    assert out["erased"] is True and out["id"] == ids["w"] and out["time"].endswith("+00:00")
    env, ch = lines[("", "store_created")]
    assert describe(ch, env).startswith("store created")


def test_open_source_never_creates(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        with open_source(tmp_path / "missing"):
            pass
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError):
        with open_source(tmp_path / "empty"):
            pass
    assert not segment_files(tmp_path / "empty")  # no log was started


def test_report_escapes_everything_and_is_self_contained(store: tuple[Path, dict[str, str]]) -> None:
    d, ids = store
    with open_source(d) as src:
        data = collect(src)
    page = render(data)
    assert data.verified and data.events == data.by_type.total()
    assert "<script" not in page.lower()
    assert html.escape("<script>alert(1)</script>") in page
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", page)  # no external (or any) assets
    assert page.count("<details") == len(data.histories) == 4
    assert "Hash chain verified" in page and data.head_hash in page
    assert "<svg" in page and "<rect" in page


def test_report_on_a_broken_chain_says_where(store: tuple[Path, dict[str, str]]) -> None:
    d, _ = store
    seg = segment_files(d)[0]  # sealed (the forget sealed it): only a full verify reads it again
    data = seg.read_bytes()
    start = data.index(b"\n") + 1  # second line
    at = data.index(b"Dana", start)
    seg.write_bytes(data[:at] + b"Dona" + data[at + 4:])  # content changed, hash not
    with open_source(d, decode=True) as src:
        info = collect(src)
    page = render(info)
    assert not info.verified
    assert "Hash chain BROKEN" in page and seg.name in page and "byte offset" in page
