"""The SQLite view: its file format, exactly-once apply, catch-up, threads, rebuilds, damage and errors."""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fabric.errors import DuplicateRecordError, FabricError, ViewError
from fabric.fabric import MemoryFabric
from fabric.query import bm25_idf, bm25_term, document_tokens, make_query
from fabric.state import Change
from projections import sqlite_impact as impact
from projections.sqlite_fts import SqliteView
from projections.sqlite_schema import DB_NAME, iso_from_us, us_from_iso

ROOT = Path(__file__).resolve().parents[2]
SEED_COLUMNS = [
    ("id", "TEXT", 0, None, 1), ("content", "TEXT", 1, None, 0), ("metadata", "TEXT", 0, None, 0),
    ("timestamp", "TEXT", 1, None, 0), ("tags", "TEXT", 0, None, 0), ("storage_tier", "TEXT", 1, None, 0),
    ("memory_type", "TEXT", 1, None, 0), ("access_count", "INTEGER", 0, "0", 0), ("last_accessed", "TEXT", 0, None, 0),
    ("embedding", "TEXT", 0, None, 0), ("schema_version", "TEXT", 1, None, 0),
]


def open_sqlite(path: Path, **config: Any) -> MemoryFabric:
    return MemoryFabric(backend="sqlite", config={"data_dir": str(path), "durability": "none", **config})


def db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / DB_NAME)


def answers(fabric: MemoryFabric, queries: list[str]) -> list[list[tuple[str, float]]]:
    return [[(h.record.id, h.score) for h in fabric.search_hits(q, 50)] for q in queries]


def corpus(rng: random.Random, n: int) -> list[dict[str, Any]]:
    words = ["alpha", "beta", "gamma", "delta", "café", "naïve", "東京", "x", "y", "z"]
    return [{"content": " ".join(rng.choices(words, k=rng.randint(0, 12))),
             "tags": rng.sample(["t1", "t2", "two words"], rng.randint(0, 2)),
             "metadata": {"i": i, "u": f"u{i % 3}"}, "record_id": f"r{i:04d}"} for i in range(n)]


QUERIES = ["alpha", "beta gamma", "cafe", "x y z", "東京", "", "naive alpha", "t1", "two words"]


# --- the file ---------------------------------------------------------------------------------


def test_seed_schema_column_for_column(tmp_path: Path) -> None:
    open_sqlite(tmp_path).close()
    con = db(tmp_path)
    cols = [(name, typ, notnull, default, pk) for _cid, name, typ, notnull, default, pk in
            con.execute("PRAGMA table_info(memory_records)")]
    assert cols[:len(SEED_COLUMNS)] == SEED_COLUMNS
    sql = con.execute("SELECT sql FROM sqlite_master WHERE name = 'memory_fts'").fetchone()[0]
    assert "fts5" in sql and "content, tags" in sql and "unicode61 remove_diacritics 2" in sql
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA user_version").fetchone()[0] >= 1
    assert con.execute("SELECT position FROM fabric_checkpoint").fetchone()[0] >= 1


def test_stored_values(tmp_path: Path) -> None:
    with open_sqlite(tmp_path) as f:
        rid = f.store("Hello wörld", {"k": "v", "n": [1, 2]}, ["t a", "b"], "knowledge", "cold",
                      embedding=[0.5, 1.0])
        f.store_many([{"content": "older", "record_id": i, "timestamp": "1999-01-02T03:04:05.000006Z"}
                      for i in ("old", "old2")])
        f.retrieve(rid)
        f.flush()
        f.count()
    con = db(tmp_path)
    row = con.execute("SELECT metadata, timestamp, tags, storage_tier, memory_type, embedding, schema_version, "
                      "tag_text FROM memory_records WHERE id = ?", (rid,)).fetchone()
    assert row[0] == '{"k":"v","n":[1,2]}'
    assert len(row[1]) == 27 and row[1].endswith("Z") and row[1][10] == "T"
    assert row[2] == '["t a","b"]' and row[7] == "t a b"
    assert row[3:5] == ("cold", "knowledge")
    assert '"vector":[0.5,1.0]' in row[5] and row[6] == "1.0"
    old = con.execute("SELECT timestamp FROM memory_records WHERE id = 'old'").fetchone()[0]
    assert old == "1999-01-02T03:04:05.000006Z"
    times = [r[0] for r in con.execute("SELECT timestamp FROM memory_records ORDER BY timestamp")]
    assert times[:2] == [old, old] and times == sorted(times)


def test_timestamps_round_trip_and_sort_as_text() -> None:
    rng = random.Random(4)
    values = [rng.randrange(-62135596800000000, 253402300799999999) for _ in range(2000)] + [0, -1, 1]
    for us in values:
        assert us_from_iso(iso_from_us(us)) == us
    assert sorted(values) == sorted(values, key=iso_from_us)


def test_index_tokens_are_the_document_tokens(tmp_path: Path) -> None:
    """What FTS5 indexed for each row is exactly fabric.query.document_tokens of it."""
    rng = random.Random(1)
    records = corpus(rng, 60) + [{"content": "q\"uote", "tags": ['a"b', "c\\d", "e\nf", "Ünï", ""]}]
    with open_sqlite(tmp_path) as f:
        f.store_many(records)
        f.count()  # the view catches up on reads
    con = db(tmp_path)
    con.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, memory_fts, instance)")
    got: dict[int, Counter[str]] = {}
    for term, doc in con.execute("SELECT term, doc FROM v"):
        got.setdefault(doc, Counter())[term] += 1
    for rowid, content, tags in con.execute("SELECT rowid, content, tags FROM memory_records"):
        import json

        assert got.get(rowid, Counter()) == Counter(document_tokens(content, json.loads(tags)))


def test_fts5_bm25_equals_the_python_definition(tmp_path: Path) -> None:
    """bm25(memory_fts), negated, is bit for bit fabric.query's BM25, so both routes rank alike."""
    rng = random.Random(2)
    records = corpus(rng, 300)
    with open_sqlite(tmp_path) as f:
        f.store_many(records)
        f.count()  # the view catches up on reads
    con = db(tmp_path)
    docs = {r["record_id"]: document_tokens(r["content"], r["tags"]) for r in records}
    n = len(docs)
    avg = sum(len(d) for d in docs.values()) / n
    checked = 0
    for text in ["alpha", "beta gamma", "x x", "cafe naive", "z y x", "t1", "two"]:
        terms = document_tokens(text, [])
        df = {t: sum(1 for d in docs.values() if t in d) for t in set(terms)}
        rows = con.execute("SELECT m.id, -bm25(memory_fts) FROM memory_fts AS f JOIN memory_records AS m "
                           "ON m.rowid = f.rowid WHERE memory_fts MATCH ?", (impact.match_expr(terms),)).fetchall()
        for rid, score in rows:
            d = docs[rid]
            s = 0.0
            for t in terms:
                s += bm25_term(bm25_idf(n, df[t]), d.count(t), len(d), avg)
            assert score == s, (text, rid)
            checked += 1
    assert checked > 100


# --- exactly once, catch-up ----------------------------------------------------------------


def test_apply_is_exactly_once(tmp_path: Path) -> None:
    with open_sqlite(tmp_path) as f:
        rid = f.store("counted")
        f.retrieve(rid)
        f.flush()
        f.count()  # catch up
        view: SqliteView = f.view
        log = f.log
        pos = view.position()
        assert pos == log.last_seq
        from fabric.codec import PlainCodec

        changes = [PlainCodec().decode(e) for e in log.read(1)]
        view.apply(changes, pos)  # again: already applied, ignored
        view.apply(changes[-1:], pos)
        view.apply(changes[:2], 2)  # behind the checkpoint: ignored
        assert view.get(rid).access_count == 1  # type: ignore[union-attr]
        extra = Change(rid, pos + 5, changes[-1].ts + 1, changes[-1].event)
        view.apply([extra], pos + 5)  # a gap: not this view's turn, ignored
        assert view.position() == pos
        assert f.retrieve(rid).access_count == 2  # type: ignore[union-attr]


WRITER = """
import sys
from fabric.fabric import MemoryFabric
f = MemoryFabric(backend=sys.argv[2], config={"data_dir": sys.argv[1]})
f.store("written by another process", record_id="other")
f.store_many([{"content": f"bulk {i}", "record_id": f"b{i}"} for i in range(50)])
f.close()
"""


@pytest.mark.parametrize("writer_backend", ["local_jsonl", "sqlite"])
def test_other_processes_writes_are_seen_by_the_next_read(tmp_path: Path, writer_backend: str) -> None:
    with open_sqlite(tmp_path) as f:
        f.store("mine")
        assert f.retrieve("other") is None
        subprocess.run([sys.executable, "-c", WRITER, str(tmp_path), writer_backend], check=True, cwd=ROOT)
        assert f.retrieve("other") is not None
        assert f.count() == 52
        assert [h.record.id for h in f.search_hits("another process")] == ["other"]
        with pytest.raises(DuplicateRecordError):
            f.store("again", record_id="b7")


def test_threads_share_one_fabric(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with open_sqlite(tmp_path) as f:
        f.store_many([{"content": f"seed word{i % 7}", "record_id": f"s{i}"} for i in range(200)])

        def writer(k: int) -> None:
            try:
                for i in range(60):
                    f.store(f"thread {k} item {i} word{i % 7}", record_id=f"t{k}-{i}")
                    if i % 10 == 0:
                        f.update(f"s{i}", content=f"updated by {k}")
            except BaseException as e:
                errors.append(e)

        def reader() -> None:
            try:
                for i in range(150):
                    f.search("word3", 5)
                    f.retrieve(f"s{i}")
                    f.list_all(limit=10)
                    f.search("", 5, where={"x": {"$exists": False}})
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
        threads += [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert f.count() == 200 + 3 * 60
        ref = MemoryFabric(config={"data_dir": str(tmp_path)})
        assert answers(f, QUERIES + ["thread item", "updated"]) == answers(ref, QUERIES + ["thread item", "updated"])
        ref.close()


# --- rebuilds -------------------------------------------------------------------------------


def _mutate(f: MemoryFabric, rng: random.Random, n: int) -> None:
    f.store_many(corpus(rng, n))
    for i in range(0, n, 7):
        f.update(f"r{i:04d}", content="changed alpha words", tags=["t2"])
    for i in range(3, n, 11):
        f.delete(f"r{i:04d}")
    f.store("back alpha", record_id="r0003")
    for i in range(0, n, 5):
        f.retrieve(f"r{i:04d}")
    f.flush()


def test_deleting_the_file_gives_the_same_answers(tmp_path: Path) -> None:
    rng = random.Random(3)
    with open_sqlite(tmp_path) as f:
        _mutate(f, rng, 300)
        before = answers(f, QUERIES)
        listing = [(r.id, r.access_count) for r in f.list_all()]
    os.unlink(tmp_path / DB_NAME)
    with open_sqlite(tmp_path) as f:
        assert answers(f, QUERIES) == before
        assert [(r.id, r.access_count) for r in f.list_all()] == listing


@pytest.mark.parametrize("other_open", [False, True], ids=["new-file", "in-place"])
def test_bulk_replay_equals_incremental(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, other_open: bool) -> None:
    rng = random.Random(5)
    with open_sqlite(tmp_path) as f:
        _mutate(f, rng, 400)
        want = answers(f, QUERIES)
        listing = [r.id for r in f.list_all()]
        rows = sorted(db(tmp_path).execute("SELECT * FROM memory_records").fetchall(), key=lambda r: r[0])
    other = SqliteView(tmp_path, {}) if other_open else None
    try:
        with open_sqlite(tmp_path) as f:
            from fabric.codec import PlainCodec

            pos = f.view.replay(PlainCodec().decode(e) for e in f.log.read(1))
            assert pos == f.log.last_seq
            assert answers(f, QUERIES) == want
            assert [r.id for r in f.list_all()] == listing
        after = sorted(db(tmp_path).execute("SELECT * FROM memory_records").fetchall(), key=lambda r: r[0])
        assert [r[1:-1] for r in after] == [r[1:-1] for r in rows]
        con = db(tmp_path)
        con.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES ('integrity-check', 1)")
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        if other is not None:
            other.close()


def test_an_interrupted_replay_changes_nothing(tmp_path: Path) -> None:
    with open_sqlite(tmp_path) as f:
        f.store_many(corpus(random.Random(6), 100))
        want = answers(f, QUERIES)

        def broken() -> Any:
            from fabric.codec import PlainCodec

            for i, env in enumerate(f.log.read(1)):
                if i == 50:
                    raise KeyboardInterrupt
                yield PlainCodec().decode(env)

        with pytest.raises(KeyboardInterrupt):
            f.view.replay(broken())
        assert answers(f, QUERIES) == want
        assert not (tmp_path / f"{DB_NAME}.rebuild").exists()


def test_big_log_opens_with_the_bulk_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fabric.fabric as ff

    monkeypatch.setattr(ff, "_BULK_REPLAY_MIN", 10)
    with MemoryFabric(config={"data_dir": str(tmp_path), "durability": "none"}) as f:
        f.store_many(corpus(random.Random(7), 120))
        want = answers(f, QUERIES)
    calls: list[int] = []
    real = SqliteView.replay

    def spy(self: SqliteView, changes: Any, progress: Any = None) -> int:
        calls.append(1)
        return real(self, changes, progress)

    monkeypatch.setattr(SqliteView, "replay", spy)
    with open_sqlite(tmp_path) as f:
        assert calls and answers(f, QUERIES) == want


# --- damage ---------------------------------------------------------------------------------


def _store_some(path: Path) -> list[list[tuple[str, float]]]:
    with open_sqlite(path) as f:
        f.store_many(corpus(random.Random(8), 150))
        return answers(f, QUERIES)


def test_garbage_file_is_moved_aside_and_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    want = _store_some(tmp_path)
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING), open_sqlite(tmp_path) as f:
        assert answers(f, QUERIES) == want
        assert f.view.recovered
    assert "moved aside" in caplog.text
    assert list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))


def test_flipped_bits_are_detected_on_open(tmp_path: Path) -> None:
    want = _store_some(tmp_path)
    path = tmp_path / DB_NAME
    data = bytearray(path.read_bytes())
    rng = random.Random(9)
    page = 4096
    for p in range(1, len(data) // page):  # every page but the header: damage b-tree headers
        data[p * page] ^= 0xFF
        data[p * page + 3 + rng.randrange(4)] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    with open_sqlite(tmp_path) as f:
        assert f.view.recovered and answers(f, QUERIES) == want


def test_checkpoint_ahead_of_the_log_is_rebuilt(tmp_path: Path) -> None:
    want = _store_some(tmp_path)
    con = db(tmp_path)
    con.execute("UPDATE fabric_checkpoint SET position = position + 1000")
    con.commit()
    con.close()
    with open_sqlite(tmp_path) as f:
        assert any("ahead" in r for r in f.view.recovered)
        assert answers(f, QUERIES) == want


def test_view_of_another_log_is_rebuilt(tmp_path: Path) -> None:
    want = _store_some(tmp_path / "a")
    _store_some(tmp_path / "b")
    with open_sqlite(tmp_path / "b") as f:
        f.store_many([{**r, "record_id": "b" + r["record_id"]} for r in corpus(random.Random(99), 400)])
    os.replace(tmp_path / "b" / DB_NAME, tmp_path / "a" / DB_NAME)
    for suffix in ("-wal", "-shm"):
        (tmp_path / "a" / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    with open_sqlite(tmp_path / "a") as f:
        assert any("another log" in r or "ahead" in r for r in f.view.recovered)
        assert answers(f, QUERIES) == want


def test_foreign_sqlite_file_is_moved_aside_not_deleted(tmp_path: Path) -> None:
    con = sqlite3.connect(tmp_path / DB_NAME)
    con.execute("CREATE TABLE precious (x)")
    con.execute("INSERT INTO precious VALUES (42)")
    con.commit()
    con.close()
    with open_sqlite(tmp_path) as f:
        f.store("x")
    kept = list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))
    assert kept and sqlite3.connect(kept[0]).execute("SELECT x FROM precious").fetchone() == (42,)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    _store_some(tmp_path)
    con = db(tmp_path)
    con.execute("PRAGMA user_version = 999")
    con.commit()
    con.close()
    with pytest.raises(ViewError, match="newer"):
        open_sqlite(tmp_path)


def test_damage_found_while_reading_is_reported_then_rebuilt(tmp_path: Path) -> None:
    want = _store_some(tmp_path)
    with open_sqlite(tmp_path, verify="off") as f:
        view: SqliteView = f.view
        view._damaged = "simulated: database disk image is malformed"
        assert answers(f, QUERIES) == want  # the next read moved it aside and replayed
        assert view.recovered


# --- errors never leak -----------------------------------------------------------------------


def test_busy_database_is_a_view_error(tmp_path: Path) -> None:
    with open_sqlite(tmp_path, busy_timeout=0.05) as f:
        f.store("x")
        blocker = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(ViewError) as info:
                f.store("y")
                f.count()
            assert not isinstance(info.value, sqlite3.Error)
            assert "busy" in str(info.value)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert f.count() == 2


def test_sqlite_errors_are_translated(tmp_path: Path) -> None:
    view = SqliteView(tmp_path, {})
    try:
        view._writer.execute("DROP TABLE fabric_meta")
        with pytest.raises(FabricError) as info:
            view.log_id()
        assert isinstance(info.value, ViewError) and not isinstance(info.value, sqlite3.Error)
    finally:
        view.close()


# --- the seed's migration snippet -------------------------------------------------------------


def test_seed_migration_snippet(tmp_path: Path) -> None:
    source = MemoryFabric(backend="local_jsonl", config={"data_dir": str(tmp_path / "src")})
    source.store_many(corpus(random.Random(10), 80))
    target = MemoryFabric(backend="sqlite", config={"data_dir": str(tmp_path / "dst")})
    for record in source.list_all():
        target.store(record.content, record.metadata, record.tags, record.memory_type.value,
                     record.storage_tier.value, record.id)
    assert answers(target, QUERIES) == [[(i, s) for i, s in a] for a in answers(source, QUERIES)]
    source.close()
    target.close()


def test_sqlite_backend_on_a_local_jsonl_store(tmp_path: Path) -> None:
    with MemoryFabric(config={"data_dir": str(tmp_path)}) as f:
        _mutate(f, random.Random(11), 120)
        want = answers(f, QUERIES)
    with open_sqlite(tmp_path) as f:
        assert answers(f, QUERIES) == want


# --- head-term lists ---------------------------------------------------------------------------


def _check_invariant(con: sqlite3.Connection) -> int:
    """Every unlisted record holding a head term is covered by its term's cut."""
    heads = impact.load(con)
    checked = 0
    for h in heads.values():
        listed = {r[0] for r in con.execute("SELECT rid FROM fabric_impact WHERE term = ?", (h.term,))}
        df = 0
        for rowid, rid, content, tag_text in con.execute("SELECT rowid, id, content, tag_text FROM memory_records"):
            toks = document_tokens(content, (tag_text,) if tag_text else ())
            if h.term not in toks:
                continue
            df += 1
            if rowid not in listed:
                s = bm25_term(h.idf_b, toks.count(h.term), len(toks), h.avg_b)
                assert h.excluded(s, rid), (h, rid, s)
                checked += 1
        assert df == h.df, h.term
    return checked


def test_pruned_search_is_exact_and_lists_stay_valid(tmp_path: Path) -> None:
    rng = random.Random(12)
    words = ["common"] * 6 + ["often"] * 3 + ["sometimes", "rare", "filler", "more", "words", "here"]
    config = {"head_df": 40, "impact_list_size": 16}
    ref_path = tmp_path
    with open_sqlite(tmp_path, **config) as f:
        f.store_many([{"content": " ".join(rng.choices(words, k=rng.randint(1, 20))), "record_id": f"d{i:04d}",
                       "metadata": {"u": i % 4}} for i in range(1500)])
        routes: Counter[str] = Counter()
        for step in range(6):
            for text in ["common", "often", "common often", "sometimes common", "rare"]:
                for kw in ({"limit": 10}, {"limit": 5, "offset": 3}, {"limit": 10, "where": {"u": 1}}):
                    got = [(h.record.id, h.score) for h in f.search_hits(text, **kw)]  # type: ignore[arg-type]
                    ref = MemoryFabric(config={"data_dir": str(ref_path)})
                    assert got == [(h.record.id, h.score) for h in ref.search_hits(text, **kw)]  # type: ignore[arg-type]
                    ref.close()
                    routes[f.view.search_route(make_query(text, **kw))] += 1  # type: ignore[arg-type]
            for _ in range(60):  # writes move the lists, counts and averages
                i = rng.randrange(1500 + step * 30)
                rid = f"d{i:04d}"
                if f.retrieve(rid) is None:
                    f.store(" ".join(rng.choices(words, k=rng.randint(1, 30))), record_id=rid)
                elif rng.random() < 0.5:
                    f.update(rid, content=" ".join(rng.choices(words, k=rng.randint(1, 30))))
                else:
                    f.delete(rid)
            f.flush()
            f.count()
        assert routes["pruned"] > 10
        assert _check_invariant(db(tmp_path)) > 100
