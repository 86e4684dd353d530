"""Peer runner: the seed's ``ioa_core.memory_fabric.MemoryFabric`` (backends local_jsonl, sqlite).

Run with the ioa_core venv's python (see envs.py); the spec comes from argv[1] or stdin, the
result is one JSON line on stdout (protocol.py). Extra spec field: ``"backend"``:
``"local_jsonl"`` (the seed's default) or ``"sqlite"``.

How the seed is driven, and why:
- as a user would: ``MemoryFabric(backend=...)`` with its defaults (metrics on, 4D tiering on with
  the "balanced" profile, no encryption, no perf tuning, commit every store). Inherited ``IOA_*``
  and ``USE_4D_TIERING`` variables are removed first so a stray shell variable cannot change the
  numbers; the result's note lists what was in force;
- records are stored with the workload's ids (``record_id=``), so every contender holds the same ids;
- the process works inside the run directory, because the seed writes its metrics log to
  ``./artifacts/lens/memory_fabric/metrics.jsonl`` relative to the working directory;
- untimed preloading disables the facade's metrics for the duration (``fabric.metrics = None``):
  with metrics on, every ``store()`` re-reads every record (``len(self.list_all())``), which is the
  seed's real cost and is what the timed ``store`` op measures, but would make preloading 10k
  records on sqlite take minutes. What ends up on disk is the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ from a peer venv's Python in the repo

import protocol  # noqa: E402  (beside this file; stdlib only)
import workload  # noqa: E402

PEER = "ioa_core"
BACKENDS = ("local_jsonl", "sqlite")
SEED_ENV_PREFIXES = ("IOA_", "USE_4D_TIERING")


def version() -> str:
    """Installed ioa-core version."""
    return importlib_metadata.version("ioa-core")


def _clean_env() -> list[str]:
    """Drop inherited seed settings so the seed runs on its defaults; return what was dropped."""
    dropped = [k for k in os.environ if k.startswith(SEED_ENV_PREFIXES)]
    for key in dropped:
        del os.environ[key]
    return dropped


def _open(backend: str, data_dir: Path, db_name: str | None = None) -> Any:
    from ioa_core.memory_fabric import MemoryFabric  # type: ignore[import-untyped]

    config: dict[str, Any] = {"data_dir": str(data_dir)}
    if db_name:
        config["db_name"] = db_name  # only to reopen the file a first instance created
    return MemoryFabric(backend=backend, config=config)


def _store_one(fabric: Any, r: workload.Record) -> int:
    fabric.store(
        r.content,
        metadata=dict(r.metadata),
        tags=list(r.tags),
        memory_type=r.memory_type,
        record_id=r.id,
    )
    return 1


def _preload(fabric: Any, spec: protocol.Spec) -> protocol.Timed:
    saved, fabric.metrics = fabric.metrics, None
    try:
        return protocol.timed_loop(
            spec.n,
            lambda r: _store_one(fabric, r),
            spec.preload_budget_s,
            prepare=lambda i: workload.record(i, spec.content_bytes, spec.seed),
            record_latency=False,
        )
    finally:
        fabric.metrics = saved


def body(ctx: dict[str, Any]) -> dict[str, Any]:
    """Parse the spec, run one op on one backend, return the result line."""
    dropped = _clean_env()
    logging.disable(logging.CRITICAL)  # the seed logs every op at INFO/DEBUG and on close
    spec = protocol.read_spec(sys.argv, workload.default_queries())
    ctx["spec"] = spec
    backend = spec.raw.get("backend", "local_jsonl")
    ctx["variant"] = backend
    if backend not in BACKENDS:
        raise protocol.SpecError(f"spec field 'backend' must be one of {BACKENDS}, got {backend!r}")

    notes = [
        "MemoryFabric defaults: USE_4D_TIERING=true (profile balanced), enable_metrics=True, "
        "no encryption, IOA_PERF_TUNE=0, IOA_COMMIT_EVERY=1, IOA_SHARDS=1",
    ]
    if spec.op != "store_many":
        notes.append("record_id=workload id")
    if dropped:
        notes.append(f"ignored inherited env: {','.join(sorted(dropped))}")
    extra: dict[str, Any] = {}

    with protocol.store_dir(spec) as run_dir:
        data_dir = run_dir / "memory"
        old_cwd = os.getcwd()
        os.chdir(run_dir)  # metrics.jsonl goes to ./artifacts/lens/... of the cwd
        try:
            fabric = _open(backend, data_dir)
            preload_s: float | None = None
            timed = protocol.Timed()
            unsupported = ""
            op = spec.op

            if op in protocol.PRELOADED_OPS:
                notes.append("preload with facade metrics off")
                t0 = time.perf_counter()
                pre = _preload(fabric, spec)
                preload_s = time.perf_counter() - t0
                if not pre.finished:
                    fabric.close()
                    notes.append(f"preload stopped at {pre.done}/{spec.n} records")
                    return protocol.result_line(
                        peer=PEER,
                        version=version(),
                        spec=spec,
                        timed=timed,
                        path=data_dir,
                        note="; ".join(notes),
                        variant=backend,
                        preload_seconds=preload_s,
                    )

            ids = [workload.record_id(i) for i in workload.access_order(spec.n, spec.n_ops, spec.seed)]

            if op == "store":
                notes.append("one store() per record; metrics on re-read all records per store")
                timed = protocol.timed_loop(
                    spec.n,
                    lambda r: _store_one(fabric, r),
                    spec.time_budget_s,
                    prepare=lambda i: workload.record(i, spec.content_bytes, spec.seed),
                )
            elif op == "store_many":
                notes.append(
                    "store_batch(): asyncio.gather over store() per record, no shared transaction; "
                    "ids are generated by the seed (store_batch drops 'id')"
                )
                batches = (spec.n + spec.batch_size - 1) // spec.batch_size

                def batch_items(b: int) -> list[dict[str, Any]]:
                    start = b * spec.batch_size
                    count = min(spec.batch_size, spec.n - start)
                    return [
                        {
                            "content": r.content,
                            "metadata": dict(r.metadata),
                            "tags": list(r.tags),
                            "memory_type": r.memory_type,
                        }
                        for r in workload.records(count, spec.content_bytes, spec.seed, start)
                    ]

                def store_batch(items: list[dict[str, Any]]) -> int:
                    asyncio.run(fabric.store_batch(items))
                    return len(items)

                timed = protocol.timed_loop(batches, store_batch, spec.time_budget_s, prepare=batch_items)
            elif op == "retrieve":
                notes.append(
                    "retrieve() by id; sqlite also writes access_count+last_accessed and commits"
                    if backend == "sqlite"
                    else "retrieve() by id from the in-memory dict (access count not persisted)"
                )
                misses = 0

                def retrieve(record_id: str) -> int:
                    nonlocal misses
                    if fabric.retrieve(record_id) is None:
                        misses += 1
                    return 1

                timed = protocol.timed_loop(spec.n_ops, retrieve, spec.time_budget_s, prepare=ids.__getitem__)
                extra["misses"] = misses
            elif op == "search":
                notes.append(
                    f"search(q, limit={spec.limit}): "
                    + (
                        "FTS5 MATCH on the raw query, ordered by access_count, timestamp"
                        if backend == "sqlite"
                        else "substring scan of content and tags, stops at limit matches"
                    )
                )
                hits = 0

                def search(query: str) -> int:
                    nonlocal hits
                    hits += len(fabric.search(query, limit=spec.limit))
                    return 1

                timed = protocol.timed_loop(
                    spec.n_ops,
                    search,
                    spec.time_budget_s,
                    prepare=lambda k: spec.queries[k % len(spec.queries)],
                )
                extra["results_returned"] = hits
            elif op == "update":
                notes.append(
                    "no update API: re-store() with the same record_id "
                    + ("(INSERT OR REPLACE)" if backend == "sqlite" else "(appends a second line)")
                )
                ordinal = workload.access_order(spec.n, spec.n_ops, spec.seed)

                def new_version(k: int) -> tuple[workload.Record, str]:
                    i = ordinal[k]
                    content = workload.updated_content(i, spec.content_bytes, spec.seed, 1 + k // spec.n)
                    return workload.record(i, spec.content_bytes, spec.seed), content

                def update(arg: tuple[workload.Record, str]) -> int:
                    r, content = arg
                    fabric.store(
                        content,
                        metadata=dict(r.metadata),
                        tags=list(r.tags),
                        memory_type=r.memory_type,
                        record_id=r.id,
                    )
                    return 1

                timed = protocol.timed_loop(spec.n_ops, update, spec.time_budget_s, prepare=new_version)
            elif op == "delete":
                notes.append(
                    "delete(): DELETE + FTS delete + commit"
                    if backend == "sqlite"
                    else "delete(): rewrites the whole run file each time"
                )
                timed = protocol.timed_loop(
                    spec.n_ops,
                    lambda record_id: int(bool(fabric.delete(record_id))),
                    spec.time_budget_s,
                    prepare=ids.__getitem__,
                )
            elif op == "replay":
                fabric.close()
                if backend == "sqlite":
                    notes.append("replay = reopen the db file + list_all() (one call)")
                    db_name = Path(fabric._store.get_db_path()).name
                    holder: dict[str, Any] = {}

                    def replay_sqlite(_k: int) -> int:
                        holder["fabric"] = _open(backend, data_dir, db_name)
                        return len(holder["fabric"].list_all())

                    timed = protocol.timed_loop(1, replay_sqlite, spec.time_budget_s)
                    fabric = holder.get("fabric", fabric)
                else:
                    notes.append(
                        "the seed never reloads earlier run files; replay = its own loader "
                        "(LocalJSONLStore._load_existing_records) on the run file"
                    )
                    from ioa_core.memory_fabric.stores.local_jsonl import (  # type: ignore[import-untyped]
                        LocalJSONLStore,
                    )

                    run_file = Path(fabric._store.get_file_path())

                    def replay_jsonl(_k: int) -> int:
                        store = LocalJSONLStore({"data_dir": str(run_dir / "replay-scratch")})
                        store.file_path = run_file
                        store._load_existing_records()
                        return len(store._records)

                    timed = protocol.timed_loop(1, replay_jsonl, spec.time_budget_s)
            else:  # pragma: no cover - parse_spec rejects other ops
                unsupported = op

            fabric.close()
            metrics_file = run_dir / "artifacts" / "lens" / "memory_fabric" / "metrics.jsonl"
            if metrics_file.exists():
                extra["metrics_file_bytes"] = metrics_file.stat().st_size
            files = sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []
            extra["files"] = files[:5]
            return protocol.result_line(
                peer=PEER,
                version=version(),
                spec=spec,
                timed=timed,
                path=data_dir,
                note="; ".join(notes),
                supported=not unsupported,
                variant=backend,
                preload_seconds=preload_s,
                extra=extra,
            )
        finally:
            os.chdir(old_cwd)


if __name__ == "__main__":
    sys.exit(protocol.main_guard(PEER, version, body))
