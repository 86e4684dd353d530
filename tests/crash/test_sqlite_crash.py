"""SIGKILL the SQLite projector at random points; after reopening, the view equals a fresh rebuild.

A child process opens the store with the sqlite backend and catches up a large backlog:
sometimes from an empty view (the bulk path: a new file renamed into place), mostly
incrementally (batches of 4096 events, one transaction each, with head-term lists to keep).
Between runs the parent appends more events (stores, updates, deletes, reads). The child is
killed after a random delay, many times. At the end the view must hold exactly the rows and
give exactly the answers of a view rebuilt from scratch from the same log, and pass SQLite's
and FTS5's integrity checks.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from fabric.events import Accessed, Deleted, Event, Stored, Updated, encode_payload
from fabric.fabric import MemoryFabric
from fabric.log import EventLog
from fabric.query import bm25_term, document_tokens
from projections import sqlite_impact as impact
from projections.sqlite_schema import DB_NAME

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import seeded  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KILLS = 32
CHILD = """
import sys
from fabric.fabric import MemoryFabric
print("ready", flush=True)
f = MemoryFabric(backend="sqlite", config={"data_dir": sys.argv[1], "head_df": 300, "impact_list_size": 32})
f.count()
for q in ("alpha", "beta gamma", "delta"):
    f.search(q)
print("done", flush=True)
f.close()
"""
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "café", "东京"]
QUERIES = ["alpha", "beta gamma", "delta", "cafe", "东京 alpha", "kappa iota theta", "zeta"]


def _grow(path: Path, rng: random.Random, n: int, start: int) -> int:
    """Append ~n events of every kind straight to the log (fast); return the next record number."""
    end = start + n
    with EventLog(path, durability="none") as log:
        for i in range(start, end, 500):
            entries = []
            for k in range(i, min(end, i + 500)):
                ev = Stored(content=" ".join(rng.choices(WORDS, k=rng.randint(1, 25))),
                            tags=rng.sample(["t1", "t2", "t3"], rng.randint(0, 2)),
                            metadata=msgspec.Raw(b'{"i":%d}' % k))
                entries.append((Stored.TYPE, f"r{k:06d}", encode_payload(ev)))
            for _ in range(25):  # updates, deletes, reads and re-stores of any record so far
                rid = f"r{rng.randrange(min(end, i + 500)):06d}"
                x = rng.random()
                other: Event
                if x < 0.4:
                    other = Updated(content=" ".join(rng.choices(WORDS, k=rng.randint(1, 25))))
                elif x < 0.6:
                    other = Updated(tags=["t9"], metadata=msgspec.Raw(b'{"moved":true}'))
                elif x < 0.8:
                    other = Deleted()
                elif x < 0.95:
                    other = Accessed(count=rng.randint(1, 3), at=1_800_000_000_000_000 + k)
                else:
                    other = Stored(content="stored again alpha")
                entries.append((other.TYPE, rid, encode_payload(other)))
            log.append(entries)
    return end


def _snapshot(path: Path) -> tuple[list[tuple[object, ...]], list[str], list[list[tuple[str, float]]]]:
    with MemoryFabric(backend="sqlite", config={"data_dir": str(path), "head_df": 300, "impact_list_size": 32}) as f:
        answers = [[(h.record.id, h.score) for h in f.search_hits(q, 20)] for q in QUERIES]
        answers += [[(h.record.id, h.score) for h in f.search_hits(q, 7, offset=5, where={"i": {"$gt": 100}})]
                    for q in QUERIES]
    con = sqlite3.connect(path / DB_NAME)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.execute("INSERT INTO memory_fts(memory_fts, rank) VALUES ('integrity-check', 1)")
    cols = "id, content, metadata, timestamp, tags, storage_tier, memory_type, access_count, last_accessed, " \
           "embedding, schema_version, created_seq, seq, updated, tag_text"
    _check_lists(con)
    rows = sorted(con.execute(f"SELECT {cols} FROM memory_records").fetchall())
    order = [r[0] for r in con.execute("SELECT id FROM memory_records ORDER BY rowid")]
    con.close()
    return rows, order, answers


def _check_lists(con: sqlite3.Connection) -> None:
    """Head-term lists survived the kills intact: counts exact, every unlisted record covered by its cut."""
    for h in impact.load(con).values():
        listed = {r[0] for r in con.execute("SELECT rid FROM fabric_impact WHERE term = ?", (h.term,))}
        df = 0
        for rowid, rid, content, tag_text in con.execute("SELECT rowid, id, content, tag_text FROM memory_records"):
            toks = document_tokens(content, (tag_text,) if tag_text else ())
            if h.term in toks:
                df += 1
                if rowid not in listed:
                    assert h.excluded(bm25_term(h.idf_b, toks.count(h.term), len(toks), h.avg_b), rid)
        assert df == h.df, h.term


def test_killed_projector_recovers_to_a_fresh_rebuild(tmp_path: Path) -> None:
    rng = seeded("sqlite crash")
    store = tmp_path / "store"
    nxt = _grow(store, rng, 21_000, 0)  # over the bulk-path threshold
    kills = finished = 0
    cycle = 0
    while kills < KILLS:
        cycle += 1
        if cycle % 8 == 1:
            (store / DB_NAME).unlink(missing_ok=True)  # next run rebuilds from empty (bulk path)
            for suffix in ("-wal", "-shm"):
                Path(f"{store / DB_NAME}{suffix}").unlink(missing_ok=True)
        else:
            nxt = _grow(store, rng, rng.choice([2000, 6000, 12000]), nxt)
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(store)], cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.9))
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            kills += 1
        child.wait()
        if child.returncode == 0:
            finished += 1
        else:
            assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
    got = _snapshot(store)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for seg in store.glob("memory_run_*.jsonl"):
        shutil.copy(seg, fresh / seg.name)
    want = _snapshot(fresh)
    print(f"{kills} kills, {finished} runs finished, {cycle} cycles, {len(want[0])} records")
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert got[2] == want[2]
