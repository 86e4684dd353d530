"""The runner protocol: read one workload spec, time the operation, print one JSON result line.

Why a separate module: the three peer runners run in three different virtualenvs and must not
import the project, yet they must agree exactly on the spec fields, on how latency percentiles are
computed and on the shape of the result line, so the bench can put them in one table. Stdlib only;
runners import it by path (it sits beside them).

Spec (JSON object, from argv[1] — inline JSON or a file path — or from stdin)::

    op             store | store_many | retrieve | search | update | delete | replay
    n              records: written timed by store/store_many, preloaded untimed for the
                   others (replay then reads them all back, timed)   default 10000
    content_bytes  size of each record's content                 default 200
    seed           workload seed (see workload.py)               default 1
    queries        search strings                                default workload.default_queries()
    n_ops          timed operations for retrieve/update/delete/search
                   default n (retrieve/update/delete), 20 per query (search)
    batch_size     records per call for store_many               default 1000
    limit          results per search                            default 10
    time_budget_s  stop the timed phase after this long          default 60
    preload_budget_s  stop preloading after this long            default time_budget_s
    dir            empty or missing directory for the store      default: a temp dir, removed after

Result line keys: peer, version, op, n, done, seconds, ops_per_s, p50_ms, p99_ms, peak_rss_mb,
disk_bytes, finished, note; plus: supported, variant, batch_size, n_ops, preload_seconds, extra,
error. ``done`` counts records written (store, store_many, replay: events or records read) or
timed operations (retrieve, search, update, delete); ``seconds`` is the time spent inside the
peer's calls (generating records and choosing ids happens outside it), and latencies are per call
(per batch for store_many, per page or per whole read for replay).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

OPS = ("store", "store_many", "retrieve", "search", "update", "delete", "replay")
PRELOADED_OPS = ("retrieve", "search", "update", "delete", "replay")
COUNTED_OPS = ("retrieve", "search", "update", "delete")  # ops where n_ops applies


class SpecError(ValueError):
    """The spec is not valid JSON or has a bad field; the message names it."""


@dataclass
class Spec:
    """A validated workload spec with every default filled in."""

    op: str
    n: int = 10000
    content_bytes: int = 200
    seed: int = 1
    queries: list[str] = field(default_factory=list)
    n_ops: int = 0
    batch_size: int = 1000
    limit: int = 10
    time_budget_s: float = 60.0
    preload_budget_s: float = 60.0
    dir: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def _int(raw: dict[str, Any], key: str, default: int, minimum: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"spec field {key!r} must be an integer >= {minimum}, got {value!r}")
    return value


def parse_spec(raw: Any, default_queries: Sequence[str]) -> Spec:
    """Check a decoded spec and fill defaults; raise :class:`SpecError` naming the bad field."""
    if not isinstance(raw, dict):
        raise SpecError("spec must be a JSON object")
    op = raw.get("op")
    if op not in OPS:
        raise SpecError(f"spec field 'op' must be one of {', '.join(OPS)}, got {op!r}")
    budget = raw.get("time_budget_s", 60)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
        raise SpecError(f"spec field 'time_budget_s' must be a positive number, got {budget!r}")
    preload_budget = raw.get("preload_budget_s", budget)
    if isinstance(preload_budget, bool) or not isinstance(preload_budget, (int, float)) or preload_budget <= 0:
        raise SpecError(f"spec field 'preload_budget_s' must be positive, got {preload_budget!r}")
    queries = raw.get("queries") or list(default_queries)
    if not isinstance(queries, list) or not all(isinstance(q, str) and q for q in queries):
        raise SpecError("spec field 'queries' must be a list of non-empty strings")
    n = _int(raw, "n", 10000, 1)
    default_ops = 20 * len(queries) if op == "search" else n
    spec = Spec(
        op=op,
        n=n,
        content_bytes=_int(raw, "content_bytes", 200, 1),
        seed=_int(raw, "seed", 1, 0),
        queries=queries,
        n_ops=_int(raw, "n_ops", default_ops, 1),
        batch_size=_int(raw, "batch_size", 1000, 1),
        limit=_int(raw, "limit", 10, 1),
        time_budget_s=float(budget),
        preload_budget_s=float(preload_budget),
        dir=raw.get("dir"),
        raw=raw,
    )
    if spec.op == "delete" and spec.n_ops > spec.n:
        raise SpecError("spec field 'n_ops' cannot exceed 'n' for delete")
    if spec.dir is not None and not isinstance(spec.dir, str):
        raise SpecError("spec field 'dir' must be a string")
    return spec


def read_spec(argv: Sequence[str], default_queries: Sequence[str]) -> Spec:
    """Spec from argv[1] (inline JSON, or a path to a JSON file, '-' = stdin) or from stdin."""
    if len(argv) > 1 and argv[1] != "-":
        text = argv[1]
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text(encoding="utf-8")
    else:
        text = sys.stdin.read()
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise SpecError(f"spec is not valid JSON: {e}") from e
    return parse_spec(raw, default_queries)


@contextlib.contextmanager
def store_dir(spec: Spec) -> Iterator[Path]:
    """The directory the peer writes to: the spec's (must be empty), else a temp dir removed after.

    A non-empty directory is refused because a store left from another run would change both
    the numbers and the disk size.
    """
    if spec.dir is None:
        path = Path(tempfile.mkdtemp(prefix="mf-peer-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    path = Path(spec.dir)
    if path.exists() and any(path.iterdir()):
        raise SpecError(f"spec field 'dir' must be empty or missing: {path} has files")
    path.mkdir(parents=True, exist_ok=True)
    yield path


def disk_bytes(path: Path) -> int:
    """Bytes of all regular files under ``path`` (what the store left on disk)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def percentile_ms(samples_ns: Sequence[int], q: float) -> float | None:
    """Nearest-rank percentile of nanosecond samples, in milliseconds (None when empty)."""
    if not samples_ns:
        return None
    ordered = sorted(samples_ns)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1] / 1e6


@dataclass
class Timed:
    """What one timed loop achieved."""

    done: int = 0
    seconds: float = 0.0
    latencies_ns: list[int] = field(default_factory=list)
    finished: bool = False


def timed_loop(
    calls: int,
    call: Callable[[Any], int],
    budget_s: float,
    *,
    prepare: Callable[[int], Any] | None = None,
    record_latency: bool = True,
) -> Timed:
    """Run ``call(prepare(k))`` (or ``call(k)``) for k in range(calls) until done or out of budget.

    ``prepare`` builds the call's input (e.g. generates the record) outside the timed window, so
    workload generation never counts against a peer: ``seconds`` is the sum of the time spent in
    ``call``, while the budget is checked against wall time before each call (one slow call can
    overrun it by its own duration; that is reported, not hidden). ``call`` returns how many
    units it completed (1 for a single op, the batch size for a batch): ``done`` sums them.
    """
    result = Timed()
    clock = time.perf_counter_ns
    deadline = clock() + int(budget_s * 1e9)
    busy = 0
    for k in range(calls):
        if clock() >= deadline:
            break
        arg = prepare(k) if prepare is not None else k
        t0 = clock()
        units = call(arg)
        elapsed = clock() - t0
        busy += elapsed
        if record_latency:
            result.latencies_ns.append(elapsed)
        result.done += units
    else:
        result.finished = True
    result.seconds = busy / 1e9
    return result


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send anything a peer prints to stderr, so stdout carries only the result line."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def result_line(
    *,
    peer: str,
    version: str,
    spec: Spec | None,
    op: str | None = None,
    timed: Timed | None = None,
    path: Path | None = None,
    note: str = "",
    supported: bool = True,
    variant: str = "",
    preload_seconds: float | None = None,
    extra: dict[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """Build the result dict in the protocol's key order."""
    timed = timed or Timed()
    seconds = round(timed.seconds, 6)
    line: dict[str, Any] = {
        "peer": peer,
        "version": version,
        "op": op or (spec.op if spec else None),
        "n": spec.n if spec else None,
        "done": timed.done,
        "seconds": seconds,
        "ops_per_s": round(timed.done / timed.seconds, 2) if timed.seconds > 0 else None,
        "p50_ms": _round(percentile_ms(timed.latencies_ns, 50)),
        "p99_ms": _round(percentile_ms(timed.latencies_ns, 99)),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "disk_bytes": disk_bytes(path) if path is not None else None,
        "finished": bool(timed.finished and supported and error is None),
        "note": note,
        "supported": supported,
        "variant": variant,
    }
    if spec is not None:
        if spec.op == "store_many":
            line["batch_size"] = spec.batch_size
        if spec.op in COUNTED_OPS:
            line["n_ops"] = spec.n_ops
    if preload_seconds is not None:
        line["preload_seconds"] = round(preload_seconds, 3)
    if extra:
        line["extra"] = extra
    if error is not None:
        line["error"] = error
    return line


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def emit(line: dict[str, Any], stdout: TextIO | None = None) -> None:
    """Print the one result line (compact JSON) on the real stdout and flush it."""
    out = stdout or sys.__stdout__
    assert out is not None, "no stdout to report on"
    out.write(json.dumps(line, separators=(", ", ": ")) + "\n")
    out.flush()


def main_guard(peer: str, version: Callable[[], str], body: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Run a runner's body and always print exactly one line, even for a bad spec or a crash.

    ``body`` gets a dict where it should put ``"spec"`` once parsed, so a crash report still
    names the op. Exit status: 0 when the body produced a result line (finished or not), 2 for a
    bad spec, 1 for a crash (the traceback goes to stderr, its last line into ``error``).
    """
    ctx: dict[str, Any] = {}
    try:
        with quiet_stdout():
            line = body(ctx)
    except SpecError as e:
        emit(
            result_line(
                peer=peer,
                version=_safe(version),
                spec=ctx.get("spec"),
                variant=str(ctx.get("variant", "")),
                error=f"bad spec: {e}",
            )
        )
        return 2
    except Exception as e:  # noqa: BLE001 - the protocol demands a line whatever happened
        traceback.print_exc(file=sys.stderr)
        emit(
            result_line(
                peer=peer,
                version=_safe(version),
                spec=ctx.get("spec"),
                variant=str(ctx.get("variant", "")),
                error=f"{type(e).__name__}: {e}",
            )
        )
        return 1
    emit(line)
    return 0


def _safe(version: Callable[[], str]) -> str:
    try:
        return version()
    except Exception:  # noqa: BLE001 - only used while reporting another failure
        return "unknown"
