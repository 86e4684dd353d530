"""The s3 backend against a real S3 server (SeaweedFS on loopback), beside the seed's S3 store.

    python tools/bench_s3.py                      # default sizes (~1-2 minutes)
    python tools/bench_s3.py --events 200000 --stores 10000 --json
    python tools/bench_s3.py --no-seed            # skip the seed (needs its venv, see tools/peers)

What it measures, all in one run on one server:

1. **Log shipping, backlog**: a log of ``--events`` events written with shipping off, then a
   shipper started on it: events/s until the checkpoint covers the whole log (log lane only).
2. **Log shipping, live**: ``--live`` single ``store()`` calls with the shipper running: how
   fast writes are acknowledged (they never wait for S3) and when S3 has all of them.
3. **10k stores, seed layout on**: ``--stores`` single ``store()`` calls, then ``--updates``
   rounds of one ``update()`` per record, with record objects on (the default): PUT requests
   per lane, and time until every record object is in S3. Beside it the seed (``ioa-core``
   2.10.0's S3 store, run in its own venv with its facade's metrics off, as
   ``tools/peers/run_ioa_core.py`` does for preloads) doing the same (its update is a store
   with the same id): one synchronous PUT per call, counted with a botocore hook.
4. **Restore**: the backlog's bucket into an empty directory: the log alone, then with the
   in-memory view built (open + fold).

No numbers are asserted anywhere; ratios are printed against the seed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _load(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


s3_server = _load("s3_server", ROOT / "tests" / "s3_server.py")
envs = _load("peer_envs", ROOT / "tools" / "peers" / "envs.py")

from fabric import __version__ as fabric_version  # noqa: E402
from fabric.fabric import MemoryFabric  # noqa: E402
from fabric.s3_layout import S3Settings, open_store  # noqa: E402
from fabric.s3_restore import restore  # noqa: E402

CONTENT = "Memory record {i}: the user mentioned topic {t} while talking about project {p}; keep for later."

SEED_RUNNER = r"""
import json, os, sys, time
spec = json.loads(sys.argv[1])
os.chdir(spec["dir"])
from importlib import metadata
from ioa_core.memory_fabric import MemoryFabric
fabric = MemoryFabric(backend="s3", config={"bucket_name": spec["bucket"], "prefix": spec["prefix"]})
store = fabric._store
if getattr(store, "_s3_client", None) is None:
    raise SystemExit("the seed fell back to local files (no boto3 or no bucket)")
puts = [0]
store._s3_client.meta.events.register("before-send.s3.PutObject", lambda **kw: puts.__setitem__(0, puts[0] + 1))
fabric.metrics = None  # with metrics on, every store() lists and downloads every object (O(n) per store)
t = time.perf_counter()
for i in range(spec["n"]):
    fabric.store(spec["content"].format(i=i, t=i % 17, p=i % 5), {"i": i, "user": "u%d" % (i % 10)},
                 ["bench", "t%d" % (i % 3)], "conversation", "hot", "seed-%d" % i)
stores = time.perf_counter() - t
for r in range(spec["updates"]):  # the seed has no update(): storing the same id again overwrites
    for i in range(spec["n"]):
        fabric.store("revision %d of record %d" % (r, i), {"i": i, "user": "u%d" % (i % 10)},
                     ["bench", "t%d" % (i % 3)], "conversation", "hot", "seed-%d" % i)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "stores_seconds": stores, "puts": puts[0],
                  "version": metadata.version("ioa-core"), "boto3": __import__("boto3").__version__}))
"""


def records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"content": CONTENT.format(i=i, t=i % 17, p=i % 5), "metadata": {"i": i, "user": f"u{i % 10}"},
             "tags": ["bench", f"t{i % 3}"]} for i in range(start, start + n)]


def s3_stats(fabric: MemoryFabric) -> dict[str, Any]:
    view: dict[str, Any] = fabric.get_stats()["views"]["s3"]
    return view


def bench_backlog(config: dict[str, Any], work: Path, events: int) -> dict[str, Any]:
    data_dir = work / "backlog"
    offline = MemoryFabric(backend="s3", config={**config, "data_dir": str(data_dir), "ship": False,
                                                 "durability": "none"})
    for start in range(0, events - 1, 1000):
        offline.store_many(records(min(1000, events - 1 - start), start))
    last = offline.log.last_seq
    size = offline.log.size_bytes()
    offline.close()
    began = time.perf_counter()
    fabric = MemoryFabric(backend="s3", config={**config, "data_dir": str(data_dir), "record_objects": False})
    ok = fabric.view.wait_shipped(600, records=False)
    seconds = time.perf_counter() - began
    req = s3_stats(fabric)["requests"]
    fabric.close()
    return {"events": last, "log_mb": round(size / 1e6, 1), "shipped": ok, "seconds": round(seconds, 3),
            "events_per_s": round(last / seconds), "mb_per_s": round(size / 1e6 / seconds, 1),
            "put_requests": req["puts"], "chunk_puts": req["chunk_puts"], "checkpoint_puts": req["checkpoint_puts"]}


def bench_live(config: dict[str, Any], work: Path, n: int) -> dict[str, Any]:
    fabric = MemoryFabric(backend="s3", config={**config, "data_dir": str(work / "live"), "record_objects": False})
    assert fabric.view.wait_shipped(30)
    items = records(n)
    began = time.perf_counter()
    for r in items:
        fabric.store(r["content"], r["metadata"], r["tags"])
    acked = time.perf_counter() - began
    ok = fabric.view.wait_shipped(300, records=False)
    shipped = time.perf_counter() - began
    req = s3_stats(fabric)["requests"]
    fabric.close()
    return {"stores": n, "acked_seconds": round(acked, 3), "stores_per_s": round(n / acked),
            "all_in_s3_seconds": round(shipped, 3), "events_per_s_to_s3": round(n / shipped), "shipped": ok,
            "put_requests": req["puts"], "chunk_puts": req["chunk_puts"]}


def bench_stores(config: dict[str, Any], work: Path, n: int, updates: int) -> dict[str, Any]:
    fabric = MemoryFabric(backend="s3", config={**config, "data_dir": str(work / "stores")})
    assert fabric.view.wait_shipped(30)
    base = dict(s3_stats(fabric)["requests"])
    items = records(n)
    began = time.perf_counter()
    ids = [fabric.store(r["content"], r["metadata"], r["tags"]) for r in items]
    for round_ in range(updates):
        for i, rid in enumerate(ids):
            fabric.update(rid, content=f"revision {round_} of record {i}")
    acked = time.perf_counter() - began
    log_ok = fabric.view.wait_shipped(300, records=False)
    log_s = time.perf_counter() - began
    rec_ok = fabric.view.wait_shipped(1200, records=True)
    all_s = time.perf_counter() - began
    req = {k: v - base.get(k, 0) for k, v in s3_stats(fabric)["requests"].items()}
    fabric.close()
    log_puts = req["chunk_puts"] + req["checkpoint_puts"]
    return {"stores": n, "updates": n * updates, "acked_seconds": round(acked, 3),
            "log_in_s3_seconds": round(log_s, 3),
            "records_in_s3_seconds": round(all_s, 3), "shipped": log_ok and rec_ok,
            "log_puts": log_puts, "record_puts": req["record_puts"], "put_requests": req["puts"],
            "record_objects_per_s": round(req["record_puts"] / max(all_s - log_s, 1e-9))}


def bench_restore(settings: S3Settings, config: dict[str, Any], work: Path) -> dict[str, Any]:
    store = open_store(settings, max_connections=32)
    target = work / "restored"
    report = restore(store, target, workers=8)
    began = time.perf_counter()
    fabric = MemoryFabric(backend="s3", config={**config, "data_dir": str(target), "ship": False})
    count = fabric.count()
    fabric.close()
    view_s = time.perf_counter() - began
    total = report.seconds + view_s
    return {"events": report.events, "log_seconds": round(report.seconds, 3),
            "log_events_per_s": round(report.events_per_second), "view_seconds": round(view_s, 3),
            "with_view_events_per_s": round(report.events / total), "records": count,
            "get_requests": report.requests.get("get", 0), "list_requests": report.requests.get("list", 0)}


def bench_seed(server: Any, bucket: str, work: Path, n: int, updates: int) -> dict[str, Any]:
    try:
        python = envs.ensure("ioa_core").python
    except Exception as e:  # noqa: BLE001 - a missing peer must not stop our numbers
        return {"skipped": f"no ioa_core venv: {e}"}
    probe = subprocess.run([str(python), "-c", "import boto3"], capture_output=True)
    if probe.returncode != 0:  # the seed's S3 store silently falls back to local files without boto3
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "boto3>=1.35"], check=True)
    run_dir = work / "seed"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOA_", "USE_4D_TIERING", "AWS_"))}
    env.update(server.env())
    spec = {"dir": str(run_dir), "bucket": bucket, "prefix": "seed/", "n": n, "updates": updates, "content": CONTENT}
    out = subprocess.run([str(python), "-c", SEED_RUNNER, json.dumps(spec)], capture_output=True, text=True, env=env,
                         timeout=3600)
    if out.returncode != 0:
        return {"skipped": f"seed run failed: {out.stderr.strip()[-500:]}"}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    result["calls_per_s"] = round(n * (1 + updates) / result["seconds"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events in the backlog (and the restore)")
    parser.add_argument("--live", type=int, default=50_000, help="single stores while shipping (log lane only)")
    parser.add_argument("--stores", type=int, default=10_000, help="single stores with record objects, vs the seed")
    parser.add_argument("--updates", type=int, default=2, help="rounds of one update per stored record")
    parser.add_argument("--no-seed", action="store_true", help="do not run the seed's S3 store")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    server = s3_server.S3Server(work / "weed").start()
    results: dict[str, Any] = {}
    try:
        os.environ.update(server.env())
        bucket = s3_server.new_bucket(server, "bench")
        settings = S3Settings(bucket=bucket, prefix="bench/backlog/", region=server.region,
                              endpoint_url=server.endpoint_url)
        base = {"bucket_name": bucket, "ship_interval": 0.2, "durability": "batch"}
        results["backlog"] = bench_backlog({**base, "prefix": "bench/backlog/"}, work, args.events)
        results["restore"] = bench_restore(settings, {**base, "prefix": "bench/backlog/"}, work)
        results["live"] = bench_live({**base, "prefix": "bench/live/"}, work, args.live)
        results["stores"] = bench_stores({**base, "prefix": "bench/stores/"}, work, args.stores, args.updates)
        results["seed"] = ({"skipped": "--no-seed"} if args.no_seed
                           else bench_seed(server, bucket, work, args.stores, args.updates))
        weed = subprocess.run([s3_server.weed_binary(), "version"], capture_output=True, text=True).stdout.strip()
        results["versions"] = {"memory-fabric": fabric_version, "python": platform.python_version(),
                               "boto3": __import__("boto3").__version__,
                               "seaweedfs": weed.splitlines()[0] if weed else "?", "cpus": os.cpu_count()}
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    _print(results, args.stores, args.updates)


def _print(r: dict[str, Any], n: int, updates: int) -> None:
    b, rs, lv, st, seed = r["backlog"], r["restore"], r["live"], r["stores"], r["seed"]
    print(f"versions: {r['versions']}")
    print(f"\nlog shipping, backlog of {b['events']:,} events ({b['log_mb']} MB): {b['seconds']} s = "
          f"{b['events_per_s']:,} events/s ({b['mb_per_s']} MB/s), {b['put_requests']} PUTs "
          f"({b['chunk_puts']} chunks, {b['checkpoint_puts']} checkpoints)")
    print(f"log shipping, live: {lv['stores']:,} single stores acknowledged at {lv['stores_per_s']:,}/s; all in S3 "
          f"after {lv['all_in_s3_seconds']} s = {lv['events_per_s_to_s3']:,} events/s, {lv['put_requests']} PUTs")
    print(f"restore of {rs['events']:,} events: log {rs['log_seconds']} s = {rs['log_events_per_s']:,} events/s; "
          f"with the view built {rs['with_view_events_per_s']:,} events/s ({rs['get_requests']} GETs, "
          f"{rs['list_requests']} LISTs)")
    calls = n * (1 + updates)
    print(f"\n{n:,} single stores + {updates} update(s) each = {calls:,} writes, "
          "record objects on (the seed's layout):")
    rows = [("", "PUTs", "PUTs/10k stores", "writes acked", "log in S3", "records in S3")]
    per = 10_000 / n
    rows.append(("memory-fabric", f"{st['put_requests']:,}", f"{st['put_requests'] * per:,.0f}",
                 f"{st['acked_seconds']} s", f"{st['log_in_s3_seconds']} s", f"{st['records_in_s3_seconds']} s"))
    rows.append(("  log lane", f"{st['log_puts']:,}", f"{st['log_puts'] * per:,.0f}", "", "", ""))
    rows.append(("  record lane", f"{st['record_puts']:,}", f"{st['record_puts'] * per:,.0f}", "", "",
                 f"({st['record_objects_per_s']:,} objects/s)"))
    if "skipped" in seed:
        rows.append(("seed", "-", "-", seed["skipped"], "", ""))
    else:
        rows.append((f"seed ioa-core {seed['version']}", f"{seed['puts']:,}", f"{seed['puts'] * per:,.0f}",
                     f"{seed['seconds']:.2f} s", f"{seed['seconds']:.2f} s", f"{seed['seconds']:.2f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if "skipped" not in seed:
        sec, puts = seed["seconds"], seed["puts"]
        print(f"\nvs. seed: writes acknowledged {sec / st['acked_seconds']:,.0f}x sooner; the log is in S3 "
              f"{sec / st['log_in_s3_seconds']:,.0f}x sooner with {puts / max(st['log_puts'], 1):,.0f}x fewer PUTs; "
              f"record objects included: {puts / st['put_requests']:.2f}x fewer PUTs, all in S3 "
              f"{sec / st['records_in_s3_seconds']:.2f}x sooner")


if __name__ == "__main__":
    main()
