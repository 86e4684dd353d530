"""The benchmark's input records, generated once and cached: `tools/peers/workload.py`, in chunks.

Why: generating a workload record costs ~30 µs (pure Python RNG), so 1M records take ~30 s and
10M five minutes — more than most of the operations they feed. Every record is a pure function
of ``(seed, i, content_bytes)``, so chunks of `CHUNK` records are generated once (in parallel,
one process per core), stored as msgpack under ``~/.cache/memory-fabric-bench/workload/`` (or
``$MEMORY_FABRIC_BENCH_DATA``), and read back in ~50 ms each. A chunk is written with the
temp + rename pattern, so a half-written chunk never passes for a good one.

The peer runners generate their own records (they import `workload.py` directly, outside their
timed calls); only our own runner reads these chunks. The bytes are the same either way:
`check_chunk` regenerates a few records and compares.

    python tools/bench_data.py 1000000      # fill the cache up to 1M records
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

import msgspec

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

import workload  # noqa: E402  (stdlib only, shared with the peer runners)

CHUNK: Final = 100_000
DATA_ENV_VAR: Final = "MEMORY_FABRIC_BENCH_DATA"

#: One record as cached: (id, content, metadata, tags, memory_type).
Row = tuple[str, str, dict[str, Any], list[str], str]


def cache_dir() -> Path:
    env = os.environ.get(DATA_ENV_VAR)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "memory-fabric-bench" / "workload"
    return base


def _chunk_path(k: int, content_bytes: int, seed: int) -> Path:
    return cache_dir() / f"v{workload.WORKLOAD_VERSION}-seed{seed}-b{content_bytes}" / f"chunk-{k:05d}.msgpack"


def _generate(args: tuple[int, int, int]) -> str:
    k, content_bytes, seed = args
    path = _chunk_path(k, content_bytes, seed)
    if path.exists():
        return str(path)
    rows = [(r.id, r.content, r.metadata, list(r.tags), r.memory_type)
            for r in workload.records(CHUNK, content_bytes, seed, k * CHUNK)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(msgspec.msgpack.encode(rows))
    tmp.replace(path)
    return str(path)


def ensure(n: int, content_bytes: int = 200, seed: int = 1, workers: int | None = None) -> None:
    """Make sure the chunks holding records 0..n-1 are cached (generates the missing ones in parallel)."""
    chunks = (n + CHUNK - 1) // CHUNK
    missing = [k for k in range(chunks) if not _chunk_path(k, content_bytes, seed).exists()]
    if not missing:
        return
    workers = workers or max(1, min(len(missing), os.cpu_count() or 1))
    if workers == 1 or len(missing) == 1:
        for k in missing:
            _generate((k, content_bytes, seed))
        return
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_generate, [(k, content_bytes, seed) for k in missing]))


_DECODER: Final = msgspec.msgpack.Decoder(list[tuple[str, str, dict[str, Any], list[str], str]])


def chunks(n: int, content_bytes: int = 200, seed: int = 1, start: int = 0) -> Iterator[list[Row]]:
    """Records ``start .. n-1`` as lists of rows, one cached chunk (or part of one) at a time."""
    ensure(n, content_bytes, seed)
    k = start // CHUNK
    while k * CHUNK < n:
        rows: list[Row] = _DECODER.decode(_chunk_path(k, content_bytes, seed).read_bytes())
        lo = max(start - k * CHUNK, 0)
        hi = min(n - k * CHUNK, CHUNK)
        yield rows[lo:hi] if (lo, hi) != (0, CHUNK) else rows
        k += 1


def rows(n: int, content_bytes: int = 200, seed: int = 1, start: int = 0) -> Iterator[Row]:
    for chunk in chunks(n, content_bytes, seed, start):
        yield from chunk


def as_dict(row: Row) -> dict[str, Any]:
    """A row as `MemoryFabric.store_many` takes it."""
    rid, content, metadata, tags, memory_type = row
    return {"record_id": rid, "content": content, "metadata": metadata, "tags": tags, "memory_type": memory_type}


def check_chunk(k: int = 0, content_bytes: int = 200, seed: int = 1, samples: int = 3) -> bool:
    """Do the cached rows equal freshly generated records? (Catches a stale cache after a workload change.)"""
    rows_ = _DECODER.decode(_chunk_path(k, content_bytes, seed).read_bytes())
    for i in (0, CHUNK // 2, CHUNK - 1)[:samples]:
        r = workload.record(k * CHUNK + i, content_bytes, seed)
        if rows_[i] != (r.id, r.content, r.metadata, list(r.tags), r.memory_type):
            return False
    return True


if __name__ == "__main__":
    total = int(float(sys.argv[1])) if len(sys.argv) > 1 else 1_000_000
    ensure(total)
    print(f"cached {total:,} records in {cache_dir()}; chunk 0 matches workload.py: {check_chunk()}")
