"""Benchmark the SQLite view: rebuild rate, catch-up, search latency per query class, file sizes.

Builds a store of N synthetic agent memories (tools/peers/workload.py: Zipf-distributed
words, so some are in nearly every record; ~200-byte contents; ids from
`fabric.model.new_id`, time-ordered), writes them straight to the log, then measures:

- rebuild: `fabric.migrate.project(rebuild=True)`, the bulk path (events/s);
- catch-up: 10k new events applied to a current view (ms);
- search: p50/p99 per query class (common / medium / rare / very rare / two words, and
  one class with a metadata filter), after one warm-up query per query (the first query
  of a head term builds its impact list; that cost is reported apart as "first");
  beside it the same queries ranked by plain FTS5 ``ORDER BY bm25`` (no pruning), and the
  in-memory view when N is small enough to hold it;
- sizes: the log, fabric.db, and their ratio.

Usage: ``python tools/bench_sqlite.py [--n 100000] [--dir D] [--reps 30] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools" / "peers"))

import workload  # noqa: E402

from fabric.events import Stored, encode_payload  # noqa: E402
from fabric.fabric import MemoryFabric  # noqa: E402
from fabric.log import EventLog  # noqa: E402
from fabric.migrate import project  # noqa: E402
from fabric.model import new_id  # noqa: E402
from fabric.query import make_query  # noqa: E402
from projections import sqlite_search  # noqa: E402

FILTER_USER = "u1"


def build_log(path: Path, n: int, start: int = 0) -> float:
    """Append records start..start+n-1 to the log at ``path``; return seconds spent generating (not timed)."""
    gen = 0.0
    enc = msgspec.json.Encoder()
    with EventLog(path, durability="none") as log:
        for i in range(start, start + n, 1000):
            t0 = time.perf_counter()
            batch = []
            for r in workload.records(min(1000, start + n - i), start=i):
                ev = Stored(content=r.content, metadata=msgspec.Raw(enc.encode(r.metadata)), tags=list(r.tags),
                            memory_type=r.memory_type)
                batch.append((Stored.TYPE, new_id(), encode_payload(ev)))
            gen += time.perf_counter() - t0
            log.append(batch)
    return gen


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def query_set() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    classes: dict[str, list[tuple[str, dict[str, Any]]]] = {
        name: [(q, {}) for q in qs] for name, qs in workload.query_classes().items()}
    classes["filtered"] = [(q, {"where": {"user": FILTER_USER}}) for q in ("project", "meeting", "customer invoice")]
    return classes


def time_search(fabric: MemoryFabric, classes: dict[str, list[tuple[str, dict[str, Any]]]],
                reps: int) -> tuple[dict[str, dict[str, float]], list[float], dict[str, str]]:
    per_class: dict[str, dict[str, float]] = {}
    everything: list[float] = []
    routes: dict[str, str] = {}
    for name, queries in classes.items():
        first: list[float] = []
        for q, kw in queries:  # warm-up: builds head-term lists
            t0 = time.perf_counter()
            fabric.search_hits(q, 10, **kw)
            first.append((time.perf_counter() - t0) * 1000)
            view = fabric.view
            if hasattr(view, "search_route"):
                routes[q + (" +filter" if kw else "")] = view.search_route(make_query(q, limit=10, **kw))
        lat: list[float] = []
        for _ in range(reps):
            for q, kw in queries:
                t0 = time.perf_counter()
                fabric.search_hits(q, 10, **kw)
                lat.append((time.perf_counter() - t0) * 1000)
        everything += lat
        per_class[name] = {"p50": percentile(lat, 50), "p99": percentile(lat, 99), "first": max(first)}
    return per_class, everything, routes


def time_plain_fts(db_path: Path, classes: dict[str, list[tuple[str, dict[str, Any]]]],
                   reps: int) -> dict[str, dict[str, float]]:
    """The same queries ranked by FTS5 alone (ORDER BY bm25 LIMIT 10, no pruning), for the "vs." column."""
    con = sqlite3.connect(db_path)
    out: dict[str, dict[str, float]] = {}
    for name, queries in classes.items():
        lat: list[float] = []
        for _ in range(max(1, reps // 5)):
            for q, kw in queries:
                query = make_query(q, limit=10, **kw)
                t0 = time.perf_counter()
                con.execute("BEGIN")
                sqlite_search.fts_ranked(con, query)
                con.execute("COMMIT")
                lat.append((time.perf_counter() - t0) * 1000)
        out[name] = {"p50": percentile(lat, 50), "p99": percentile(lat, 99)}
    con.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records (default 100000)")
    ap.add_argument("--dir", help="work directory (default: a temporary one, removed after)")
    ap.add_argument("--reps", type=int, default=30, help="timed repetitions of each query")
    ap.add_argument("--memory-max", type=int, default=200_000, help="compare with the in-memory view up to this N")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-sqlite-"))
    store = work / "store"
    if store.exists():
        shutil.rmtree(store)
    result: dict[str, Any] = {"n": args.n, "versions": {
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version, "msgspec": msgspec.__version__,
        "workload": workload.WORKLOAD_VERSION, "machine": f"{platform.machine()}, {os.cpu_count()} cpus"}}
    try:
        say = (lambda *a: None) if args.json else print
        say(f"generating {args.n:,} records into {store} ...")
        result["generate_s"] = build_log(store, args.n)
        say("rebuilding the sqlite view (bulk path) ...")
        rep = project(store, "sqlite", rebuild=True)
        result["rebuild"] = {"events": rep.events, "seconds": rep.seconds, "events_per_s": rep.events_per_second}
        result["db_bytes"] = (store / "fabric.db").stat().st_size

        say("catch-up of 10,000 new events ...")
        fabric = MemoryFabric(backend="sqlite", config={"data_dir": str(store), "durability": "none"})
        fabric.search("project")  # a head-term list to keep up to date, as in steady use
        build_log(store, 10, start=args.n)  # steady state: the reader has caught up once (log read position)
        fabric.count()
        build_log(store, 10_000, start=args.n + 10)
        fabric.log.refresh()
        t0 = time.perf_counter()
        applied = fabric.catch_up()
        result["catch_up"] = {"events": applied, "ms": (time.perf_counter() - t0) * 1000}

        say("searching ...")
        classes = query_set()
        per_class, everything, routes = time_search(fabric, classes, args.reps)
        result["search"] = per_class
        result["search_all"] = {"p50": percentile(everything, 50), "p99": percentile(everything, 99)}
        result["routes"] = routes
        build_log(store, 10_000, start=args.n + 10_010)  # again, now with every queried head term's list to keep
        fabric.log.refresh()
        t0 = time.perf_counter()
        applied = fabric.catch_up()
        heads = fabric.view._writer.execute("SELECT count(*) FROM fabric_head_terms").fetchone()[0]
        result["catch_up_lists"] = {"events": applied, "ms": (time.perf_counter() - t0) * 1000, "head_terms": heads}
        fabric.close()
        result["plain_fts"] = time_plain_fts(store / "fabric.db", classes, args.reps)
        if args.n <= args.memory_max:
            say("the in-memory view, for comparison ...")
            t0 = time.perf_counter()
            mem = MemoryFabric(config={"data_dir": str(store)})
            mem.search("warm")  # builds its lazy index
            result["memory_open_s"] = time.perf_counter() - t0
            result["memory_search"], _, _ = time_search(mem, classes, max(3, args.reps // 10))
            mem.close()
        result["db_bytes"] = (store / "fabric.db").stat().st_size
        with EventLog(store, create=False) as log:
            result["log_bytes"] = log.size_bytes()
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print_table(result)
    return 0


def print_table(r: dict[str, Any]) -> None:
    v = r["versions"]
    print(f"\nSQLite view, N = {r['n']:,} records  (python {v['python']}, sqlite {v['sqlite']}, "
          f"msgspec {v['msgspec']}, workload v{v['workload']}, {v['machine']})")
    rb = r["rebuild"]
    print(f"  rebuild (bulk path)     {rb['events']:>10,} events  {rb['seconds']:8.2f} s  "
          f"{rb['events_per_s']:>10,.0f} events/s")
    cu = r["catch_up"]
    print(f"  catch-up (1 head list)  {cu['events']:>10,} events  {cu['ms']:8.1f} ms")
    cl = r["catch_up_lists"]
    print(f"  catch-up ({cl['head_terms']} head lists) {cl['events']:>8,} events  {cl['ms']:8.1f} ms")
    ratio = r["db_bytes"] / r["log_bytes"]
    print(f"  files                   log {r['log_bytes'] / 1e6:,.1f} MB, fabric.db {r['db_bytes'] / 1e6:,.1f} MB "
          f"({ratio:.2f}x the log)")
    mem = r.get("memory_search")
    head = f"  {'search (limit 10)':<16} {'p50 ms':>8} {'p99 ms':>8} {'first ms':>9} {'FTS5 p50':>9} {'vs.':>7}"
    print(head + (f" {'memory p50':>11}" if mem else ""))
    for name, s in r["search"].items():
        plain = r["plain_fts"][name]
        line = (f"  {name:<16} {s['p50']:8.2f} {s['p99']:8.2f} {s['first']:9.1f} {plain['p50']:9.2f} "
                f"{plain['p50'] / s['p50']:6.1f}x")
        if mem:
            line += f" {mem[name]['p50']:11.2f}"
        print(line)
    a = r["search_all"]
    print(f"  {'all classes':<16} {a['p50']:8.2f} {a['p99']:8.2f}")
    print("  routes: " + ", ".join(f"{q}={route}" for q, route in r["routes"].items()))


if __name__ == "__main__":
    raise SystemExit(main())
