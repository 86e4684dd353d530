"""Encrypted vs plaintext throughput, side by side in one run.

    python tools/bench_crypto.py [--records 20000] [--batch 1000] [--repeat 3] [--json]

For each workload the same records go into a fresh store twice, once plaintext and once
with ``encryption_key=`` (default scrypt cost: derived once per open, not timed), best of
``--repeat`` runs, interleaved so drift hits both alike. Printed: records/s each way and
the ratio encrypted / plaintext (the goal is >= 50%). Reopen = a cold open's replay of the
whole log into the in-memory view (decrypting every record), scrypt excluded.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cryptography  # noqa: E402
import msgspec  # noqa: E402

from fabric import MemoryFabric  # noqa: E402

PASSPHRASE = "bench passphrase, not a secret"


def make_records(n: int) -> list[dict[str, Any]]:
    words = "peanut allergy dark mode editor meeting notes travel budget recipe garden".split()
    return [{"content": f"record {i}: " + " ".join(words[(i + j) % len(words)] for j in range(24)),
             "metadata": {"user": f"u{i % 50}", "turn": i, "source": "chat"},
             "tags": [words[i % len(words)], "bench"]} for i in range(n)]


def single(m: MemoryFabric, records: list[dict[str, Any]], batch: int) -> float:
    t0 = time.perf_counter()
    for r in records:
        m.store(r["content"], r["metadata"], r["tags"])
    return time.perf_counter() - t0


def many(m: MemoryFabric, records: list[dict[str, Any]], batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(records), batch):
        m.store_many(records[i:i + batch])
    return time.perf_counter() - t0


def update(m: MemoryFabric, records: list[dict[str, Any]], batch: int) -> float:
    """Updates of content (sealed under each record's existing key); the stores are not timed."""
    ids = m.store_many(records)
    t0 = time.perf_counter()
    for rid in ids:
        m.update(rid, content="changed " + rid)
    return time.perf_counter() - t0


def run(workload: Callable[..., float], key: str | None, records: list[dict[str, Any]], batch: int,
        durability: str) -> tuple[float, float]:
    """(records/s of the workload, records/s of a cold reopen) for one fresh store."""
    root = Path(tempfile.mkdtemp(prefix="bench_crypto_"))
    try:
        with MemoryFabric(config={"data_dir": str(root), "durability": durability}, encryption_key=key) as m:
            elapsed = workload(m, records, batch)
            m.flush()
        t0 = time.perf_counter()
        m2 = MemoryFabric(config={"data_dir": str(root), "durability": durability}, encryption_key=key)
        opened = time.perf_counter() - t0
        derive = 0.0
        if key is not None:  # subtract the one scrypt derivation: measured alone
            from fabric import crypto

            params = crypto.load_key_params(_genesis_params(m2))
            t1 = time.perf_counter()
            crypto.derive_key(key, params)
            derive = time.perf_counter() - t1
        m2.close()
        return len(records) / elapsed, len(records) / max(opened - derive, 1e-9)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _genesis_params(m: MemoryFabric) -> Any:
    env = next(iter(m.log.read(1, 1)))
    return msgspec.json.decode(env.data)["encryption"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--durability", default="batch", choices=["always", "batch", "none"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    records = make_records(args.records)
    workloads = {"store (one per call)": single, f"store_many ({args.batch}/batch)": many,
                 "update content": update}
    results: dict[str, dict[str, float]] = {}
    for name, fn in workloads.items():
        best = {"plain": 0.0, "encrypted": 0.0, "plain_reopen": 0.0, "encrypted_reopen": 0.0}
        for _ in range(args.repeat):
            for label, key in (("plain", None), ("encrypted", PASSPHRASE)):
                rate, reopen = run(fn, key, records, args.batch, args.durability)
                best[label] = max(best[label], rate)
                best[label + "_reopen"] = max(best[label + "_reopen"], reopen)
        best["ratio"] = best["encrypted"] / best["plain"]
        results[name] = best
    reopen = {"plain": max(r["plain_reopen"] for r in results.values()),
              "encrypted": max(r["encrypted_reopen"] for r in results.values())}
    if args.json:
        sys.stdout.write(msgspec.json.encode({"results": results, "reopen": reopen}).decode() + "\n")
        return
    print(f"bench_crypto: Python {platform.python_version()}, cryptography {cryptography.__version__}, "
          f"msgspec {msgspec.__version__}; {args.records} records of ~200 B, durability {args.durability}, "
          f"best of {args.repeat}")
    print(f"  {'workload':28s} {'plaintext/s':>12s} {'encrypted/s':>12s} {'encrypted vs plain':>19s}")
    for name, r in results.items():
        print(f"  {name:28s} {r['plain']:12,.0f} {r['encrypted']:12,.0f} {r['ratio']:18.0%}")
    print(f"  {'cold reopen (replay)':28s} {reopen['plain']:12,.0f} {reopen['encrypted']:12,.0f} "
          f"{reopen['encrypted'] / reopen['plain']:18.0%}")


if __name__ == "__main__":
    main()
