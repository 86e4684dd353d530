"""Peer runner: LangGraph's long-term memory store, ``langgraph.store.sqlite.SqliteStore``.

Run with the langgraph venv's python (see envs.py); spec from argv[1] or stdin, one JSON result
line on stdout (protocol.py).

Mapping of the workload, and why:
- namespace ``("memories", <user>)``, key = workload id, value = ``{"content", "metadata",
  "tags", "memory_type"}``: LangGraph's documented pattern (memories per user), and it gives
  ``get`` the namespace it needs;
- the store is opened the way its docs show, ``SqliteStore.from_conn_string(path)`` + ``setup()``:
  autocommit connection, SQLite's default rollback journal and ``synchronous=FULL``;
- search: without an ``index`` SqliteStore ignores the query text (it lists by ``updated_at``), so
  the ``search`` op gives it a vector index over ``content`` whose ``embed`` is a deterministic
  hashed bag of words (no model, no network): a lexical match scored by cosine, brute force in
  SQLite with sqlite-vec. Spec ``"index": true|false`` forces it on or off for any op, ``"dims"``
  sets the vector size (default 256); preloading then pays for embeddings too;
- store_many: one ``batch([PutOp, ...])`` per batch, which runs in one transaction;
- replay: reopen, list the namespaces, then read each namespace in one ``search`` with
  ``limit=n`` (offset paging over ``updated_at``, a per-second timestamp, is not stable).
"""

from __future__ import annotations

import logging
import math
import re
import sys
import time
import zlib
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ from a peer venv's Python in the repo

import protocol  # noqa: E402  (beside this file; stdlib only)
import workload  # noqa: E402

PEER = "langgraph"
NAMESPACE_ROOT = "memories"
DB_NAME = "store.sqlite"
_TOKEN = re.compile(r"[a-z0-9]+")


def version() -> str:
    """Installed langgraph-checkpoint-sqlite version."""
    return importlib_metadata.version("langgraph-checkpoint-sqlite")


def hashed_bag_of_words(dims: int):  # type: ignore[no-untyped-def]
    """An ``embed`` callable for SqliteStore: signed feature hashing of words, L2-normalised.

    Deterministic and model-free, so a search is a lexical match that every run reproduces.
    """

    def embed(texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for text in texts:
            vec = [0.0] * dims
            for token in _TOKEN.findall(text.lower()):
                h = zlib.crc32(token.encode())
                vec[h % dims] += 1.0 if h & 0x80000000 else -1.0
            norm = math.sqrt(sum(x * x for x in vec)) or 1.0
            out.append([x / norm for x in vec])
        return out

    return embed


def _item(r: workload.Record) -> tuple[tuple[str, str], str, dict[str, Any]]:
    value = {
        "content": r.content,
        "metadata": dict(r.metadata),
        "tags": list(r.tags),
        "memory_type": r.memory_type,
    }
    return (NAMESPACE_ROOT, str(r.metadata["user"])), r.id, value


def body(ctx: dict[str, Any]) -> dict[str, Any]:
    """Parse the spec, run one op on SqliteStore, return the result line."""
    logging.disable(logging.CRITICAL)
    spec = protocol.read_spec(sys.argv, workload.default_queries())
    ctx["spec"] = spec
    from langgraph.store.base import PutOp
    from langgraph.store.sqlite import SqliteStore  # type: ignore[import-untyped]

    use_index = bool(spec.raw.get("index", spec.op == "search"))
    dims = int(spec.raw.get("dims", 256))
    index = {"dims": dims, "embed": hashed_bag_of_words(dims), "fields": ["content"]} if use_index else None
    variant = f"vector-index(hashed-bow,{dims})" if use_index else "no-index"
    ctx["variant"] = variant
    notes = [
        "SqliteStore.from_conn_string defaults (autocommit, journal=delete, synchronous=FULL)",
        "namespace ('memories', user), key = workload id",
    ]
    extra: dict[str, Any] = {}

    with protocol.store_dir(spec) as run_dir:
        db = str(run_dir / DB_NAME)
        timed = protocol.Timed()
        preload_s: float | None = None
        with SqliteStore.from_conn_string(db, index=index) as store:
            store.setup()

            def record_item(i: int) -> tuple[tuple[str, str], str, dict[str, Any]]:
                return _item(workload.record(i, spec.content_bytes, spec.seed))

            def put(item: tuple[tuple[str, str], str, dict[str, Any]]) -> int:
                store.put(*item)
                return 1

            def put_batch(ops: list[Any]) -> int:
                store.batch(ops)
                return len(ops)

            if spec.op in protocol.PRELOADED_OPS:
                t0 = time.perf_counter()
                pre = protocol.timed_loop(
                    (spec.n + 999) // 1000,
                    put_batch,
                    spec.preload_budget_s,
                    prepare=lambda b: _put_ops(PutOp, spec, b, 1000),
                    record_latency=False,
                )
                preload_s = time.perf_counter() - t0
                notes.append("preload with batch() of 1000")
                if not pre.finished:
                    notes.append(f"preload stopped at {pre.done}/{spec.n} records")
                    return protocol.result_line(
                        peer=PEER,
                        version=version(),
                        spec=spec,
                        path=run_dir,
                        note="; ".join(notes),
                        variant=variant,
                        preload_seconds=preload_s,
                    )

            order = workload.access_order(spec.n, spec.n_ops, spec.seed)
            if spec.op == "store":
                notes.append("one put() per record (one transaction each)")
                timed = protocol.timed_loop(spec.n, put, spec.time_budget_s, prepare=record_item)
            elif spec.op == "store_many":
                notes.append("batch([PutOp...]) per batch, one transaction")
                batches = (spec.n + spec.batch_size - 1) // spec.batch_size
                timed = protocol.timed_loop(
                    batches,
                    put_batch,
                    spec.time_budget_s,
                    prepare=lambda b: _put_ops(PutOp, spec, b, spec.batch_size),
                )
            elif spec.op == "retrieve":
                notes.append("get(namespace, key)")
                misses = 0

                def get(item: tuple[tuple[str, str], str, dict[str, Any]]) -> int:
                    nonlocal misses
                    if store.get(item[0], item[1]) is None:
                        misses += 1
                    return 1

                timed = protocol.timed_loop(
                    spec.n_ops, get, spec.time_budget_s, prepare=lambda k: record_item(order[k])
                )
                extra["misses"] = misses
            elif spec.op == "search":
                notes.append(
                    f"search(('memories',), query=q, limit={spec.limit})"
                    + (": cosine over hashed bag of words" if use_index else ": query ignored")
                )
                hits = 0

                def search(query: str) -> int:
                    nonlocal hits
                    hits += len(store.search((NAMESPACE_ROOT,), query=query, limit=spec.limit))
                    return 1

                timed = protocol.timed_loop(
                    spec.n_ops,
                    search,
                    spec.time_budget_s,
                    prepare=lambda k: spec.queries[k % len(spec.queries)],
                )
                extra["results_returned"] = hits
            elif spec.op == "update":
                notes.append("put() with the same key (upsert)")

                def new_version(k: int) -> tuple[tuple[str, str], str, dict[str, Any]]:
                    i = order[k]
                    ns, key, value = record_item(i)
                    value["content"] = workload.updated_content(i, spec.content_bytes, spec.seed, 1 + k // spec.n)
                    return ns, key, value

                timed = protocol.timed_loop(spec.n_ops, put, spec.time_budget_s, prepare=new_version)
            elif spec.op == "delete":
                notes.append("delete(namespace, key)")

                def delete(item: tuple[tuple[str, str], str, dict[str, Any]]) -> int:
                    store.delete(item[0], item[1])
                    return 1

                timed = protocol.timed_loop(
                    spec.n_ops, delete, spec.time_budget_s, prepare=lambda k: record_item(order[k])
                )

        if spec.op == "replay":
            notes.append("replay = reopen + list_namespaces + one search(limit=n) per namespace")

            def replay(_k: int) -> int:
                count = 0
                with SqliteStore.from_conn_string(db) as reader:
                    reader.setup()
                    for ns in reader.list_namespaces(prefix=(NAMESPACE_ROOT,), limit=100000):
                        count += len(reader.search(ns, limit=spec.n))
                return count

            timed = protocol.timed_loop(1, replay, spec.time_budget_s)
            if timed.done != spec.n:
                notes.append(f"replay read {timed.done} items, expected {spec.n}")

        return protocol.result_line(
            peer=PEER,
            version=version(),
            spec=spec,
            timed=timed,
            path=run_dir,
            note="; ".join(notes),
            variant=variant,
            preload_seconds=preload_s,
            extra=extra,
        )


def _put_ops(put_op: Any, spec: protocol.Spec, b: int, size: int) -> list[Any]:
    """PutOps for batch b (records b*size ..), built before the timed call."""
    start = b * size
    count = min(size, spec.n - start)
    return [put_op(*_item(r)) for r in workload.records(count, spec.content_bytes, spec.seed, start)]


if __name__ == "__main__":
    sys.exit(protocol.main_guard(PEER, version, body))
