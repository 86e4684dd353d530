"""Peer runner: the ``eventsourcing`` library's SQLite event store (raw append and replay).

Run with the eventsourcing venv's python (see envs.py); spec from argv[1] or stdin, one JSON
result line on stdout (protocol.py).

Why this peer: it is the closest thing to our design (an append-only event log with a position
per event), so its append and replay rates are the bar for our log. The mapping:
- an ``Application`` on ``eventsourcing.sqlite`` (WAL, autocommit, the library's defaults: JSON
  transcoder, no compression, no cipher, no snapshots) and one ``Memory`` aggregate per record,
  whose id is a UUID5 of the workload id; creating it records one ``Stored`` event;
- store: ``app.save(aggregate)`` per record, i.e. one event per transaction;
- store_many: ``app.save(*aggregates)`` per batch, i.e. one transaction per batch;
- update / delete: ``repository.get`` (replays that aggregate), trigger ``Updated`` / ``Deleted``,
  ``save`` (read-modify-write, as the library is meant to be used);
- retrieve: ``repository.get`` by id;
- replay: a fresh application reads the whole application sequence with
  ``recorder.select_notifications`` in pages and decodes every event with ``mapper``
  (``to_domain_event``), folding them into a dict of records: the analogue of our rebuild;
- search: not offered by the library (no query over event contents): reported as unsupported.

Spec ``"mode": "recorder"`` skips the application layer and drives ``SQLiteApplicationRecorder``
directly with pre-encoded ``StoredEvent`` rows (stdlib ``json`` bytes): the raw lower bound for
store, store_many (one ``insert_events`` call per batch), retrieve (``select_events``) and replay
(pages of ``select_notifications`` + ``json.loads``); update and delete need the application.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ from a peer venv's Python in the repo

import protocol  # noqa: E402  (beside this file; stdlib only)
import workload  # noqa: E402
from eventsourcing.application import Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402
from eventsourcing.persistence import StoredEvent  # noqa: E402

PEER = "eventsourcing"
DB_NAME = "events.sqlite"
MODES = ("application", "recorder")
RAW_TOPIC = "memory_fabric_bench:Stored"
REPLAY_PAGE = 1000
ID_NAMESPACE = uuid.UUID("6f0c2a39-2b9e-4d5c-9a57-0d3c1b7e5f11")


def version() -> str:
    """Installed eventsourcing version."""
    return importlib_metadata.version("eventsourcing")


class Memory(Aggregate):
    """One agent memory; its events are the whole history of the record."""

    @staticmethod
    def create_id(record_id: str, **_: Any) -> uuid.UUID:
        """Deterministic aggregate id from the workload id, so retrieves know it."""
        return uuid.uuid5(ID_NAMESPACE, record_id)

    @event("Stored")
    def __init__(
        self,
        record_id: str,
        content: str,
        metadata: dict[str, Any],
        tags: list[str],
        memory_type: str,
    ) -> None:
        self.record_id = record_id
        self.content = content
        self.metadata = metadata
        self.tags = tags
        self.memory_type = memory_type
        self.deleted = False

    @event("Updated")
    def update(self, content: str) -> None:
        self.content = content

    @event("Deleted")
    def delete(self) -> None:
        self.deleted = True


class MemoryApp(Application[uuid.UUID]):
    """The application whose recorder holds the events (name only matters for env lookups)."""


def _new(r: workload.Record) -> Memory:
    return Memory(
        record_id=r.id,
        content=r.content,
        metadata=dict(r.metadata),
        tags=list(r.tags),
        memory_type=r.memory_type,
    )


def _batch(spec: protocol.Spec, b: int, size: int) -> list[workload.Record]:
    """Records of batch b (b*size ..), generated before the timed call."""
    start = b * size
    return list(workload.records(min(size, spec.n - start), spec.content_bytes, spec.seed, start))


def _app(db: Path) -> MemoryApp:
    return MemoryApp(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)})


def _raw_event(r: workload.Record) -> StoredEvent:
    state = json.dumps(
        {
            "record_id": r.id,
            "content": r.content,
            "metadata": r.metadata,
            "tags": list(r.tags),
            "memory_type": r.memory_type,
        },
        separators=(",", ":"),
    ).encode()
    return StoredEvent(originator_id=Memory.create_id(r.id), originator_version=1, topic=RAW_TOPIC, state=state)


def body(ctx: dict[str, Any]) -> dict[str, Any]:
    """Parse the spec, run one op on the SQLite event store, return the result line."""
    logging.disable(logging.CRITICAL)
    spec = protocol.read_spec(sys.argv, workload.default_queries())
    ctx["spec"] = spec
    mode = spec.raw.get("mode", "application")
    if mode not in MODES:
        raise protocol.SpecError(f"spec field 'mode' must be one of {MODES}, got {mode!r}")
    variant = "application+aggregate" if mode == "application" else "recorder"
    ctx["variant"] = variant
    notes = ["eventsourcing.sqlite defaults (WAL, JSON transcoder, no snapshots)"]
    extra: dict[str, Any] = {}

    if spec.op == "search" or (mode == "recorder" and spec.op in ("update", "delete")):
        why = (
            "the library stores and replays events but has no query over them"
            if spec.op == "search"
            else "recorder mode has no aggregate versions to append to; use mode application"
        )
        return protocol.result_line(
            peer=PEER,
            version=version(),
            spec=spec,
            supported=False,
            variant=variant,
            note=f"unsupported: {why}",
        )
    if mode == "recorder":
        return _recorder_body(spec, notes, variant)

    with protocol.store_dir(spec) as run_dir:
        db = run_dir / DB_NAME
        app = _app(db)
        timed = protocol.Timed()
        preload_s: float | None = None

        def save_batch(batch: list[workload.Record]) -> int:
            app.save(*(_new(r) for r in batch))
            return len(batch)

        if spec.op in protocol.PRELOADED_OPS:
            t0 = time.perf_counter()
            pre = protocol.timed_loop(
                (spec.n + 999) // 1000,
                save_batch,
                spec.preload_budget_s,
                prepare=lambda b: _batch(spec, b, 1000),
                record_latency=False,
            )
            preload_s = time.perf_counter() - t0
            notes.append("preload with save() of 1000 aggregates")
            if not pre.finished:
                app.close()
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

        def aggregate_id(i: int) -> uuid.UUID:
            return Memory.create_id(workload.record_id(i))

        if spec.op == "store":
            notes.append("save() per aggregate: one event per transaction")

            def save_one(r: workload.Record) -> int:
                app.save(_new(r))
                return 1

            timed = protocol.timed_loop(
                spec.n,
                save_one,
                spec.time_budget_s,
                prepare=lambda i: workload.record(i, spec.content_bytes, spec.seed),
            )
        elif spec.op == "store_many":
            notes.append(f"save(*aggregates): {spec.batch_size} events per transaction")
            batches = (spec.n + spec.batch_size - 1) // spec.batch_size
            timed = protocol.timed_loop(
                batches,
                save_batch,
                spec.time_budget_s,
                prepare=lambda b: _batch(spec, b, spec.batch_size),
            )
        elif spec.op == "retrieve":
            notes.append("repository.get(id): replays the aggregate's events")

            def get(agg_id: uuid.UUID) -> int:
                app.repository.get(agg_id)
                return 1

            timed = protocol.timed_loop(spec.n_ops, get, spec.time_budget_s, prepare=lambda k: aggregate_id(order[k]))
        elif spec.op == "update":
            notes.append("repository.get + Updated event + save (one transaction)")

            def new_version(k: int) -> tuple[uuid.UUID, str]:
                i = order[k]
                content = workload.updated_content(i, spec.content_bytes, spec.seed, 1 + k // spec.n)
                return aggregate_id(i), content

            def update(arg: tuple[uuid.UUID, str]) -> int:
                agg: Memory = app.repository.get(arg[0])
                agg.update(content=arg[1])
                app.save(agg)
                return 1

            timed = protocol.timed_loop(spec.n_ops, update, spec.time_budget_s, prepare=new_version)
        elif spec.op == "delete":
            notes.append("repository.get + Deleted event + save (events are never removed)")

            def delete(agg_id: uuid.UUID) -> int:
                agg: Memory = app.repository.get(agg_id)
                agg.delete()
                app.save(agg)
                return 1

            timed = protocol.timed_loop(
                spec.n_ops, delete, spec.time_budget_s, prepare=lambda k: aggregate_id(order[k])
            )
        elif spec.op == "replay":
            app.close()
            notes.append(
                f"replay = fresh app, select_notifications pages of {REPLAY_PAGE} + "
                "mapper.to_domain_event + fold into dict"
            )
            reader = _app(db)
            state: dict[str, dict[str, Any]] = {}
            position = {"next": 1}
            total_events = reader.recorder.max_notification_id() or 0
            pages = (total_events + REPLAY_PAGE - 1) // REPLAY_PAGE

            def replay_page(_k: int) -> int:
                notifications = reader.recorder.select_notifications(start=position["next"], limit=REPLAY_PAGE)
                for notification in notifications:
                    ev = reader.mapper.to_domain_event(notification)
                    if isinstance(ev, Memory.Stored):  # type: ignore[attr-defined]
                        state[ev.record_id] = {
                            "content": ev.content,
                            "metadata": ev.metadata,
                            "tags": ev.tags,
                        }
                    position["next"] = notification.id + 1
                return len(notifications)

            timed = protocol.timed_loop(pages, replay_page, spec.time_budget_s)
            extra["records_folded"] = len(state)
            app = reader

        app.close()
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


def _recorder_body(spec: protocol.Spec, notes: list[str], variant: str) -> dict[str, Any]:
    """The raw variant: StoredEvent rows straight into the application recorder."""
    with protocol.store_dir(spec) as run_dir:
        db = run_dir / DB_NAME
        app = _app(db)
        recorder = app.recorder
        timed = protocol.Timed()
        preload_s: float | None = None
        extra: dict[str, Any] = {}

        def insert_batch(batch: list[workload.Record]) -> int:
            recorder.insert_events([_raw_event(r) for r in batch])  # encoding is part of append
            return len(batch)

        if spec.op in protocol.PRELOADED_OPS:
            t0 = time.perf_counter()
            pre = protocol.timed_loop(
                (spec.n + 999) // 1000,
                insert_batch,
                spec.preload_budget_s,
                prepare=lambda b: _batch(spec, b, 1000),
                record_latency=False,
            )
            preload_s = time.perf_counter() - t0
            notes.append("preload with insert_events of 1000")
            if not pre.finished:
                app.close()
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

        if spec.op == "store":
            notes.append("insert_events([one StoredEvent]) per record: one per transaction")
            timed = protocol.timed_loop(spec.n, insert_batch, spec.time_budget_s, prepare=lambda i: _batch(spec, i, 1))
        elif spec.op == "store_many":
            notes.append(f"insert_events({spec.batch_size} StoredEvents) per transaction")
            batches = (spec.n + spec.batch_size - 1) // spec.batch_size
            timed = protocol.timed_loop(
                batches,
                insert_batch,
                spec.time_budget_s,
                prepare=lambda b: _batch(spec, b, spec.batch_size),
            )
        elif spec.op == "retrieve":
            notes.append("select_events(originator_id) + json.loads")
            order = workload.access_order(spec.n, spec.n_ops, spec.seed)

            def retrieve(agg_id: uuid.UUID) -> int:
                for row in recorder.select_events(agg_id):
                    json.loads(row.state)
                return 1

            timed = protocol.timed_loop(
                spec.n_ops,
                retrieve,
                spec.time_budget_s,
                prepare=lambda k: Memory.create_id(workload.record_id(order[k])),
            )
        elif spec.op == "replay":
            app.close()
            notes.append(f"replay = fresh recorder, select_notifications pages of {REPLAY_PAGE} + json.loads")
            app = _app(db)
            recorder = app.recorder
            state: dict[str, Any] = {}
            position = {"next": 1}
            pages = ((recorder.max_notification_id() or 0) + REPLAY_PAGE - 1) // REPLAY_PAGE

            def replay_page(_k: int) -> int:
                notifications = recorder.select_notifications(start=position["next"], limit=REPLAY_PAGE)
                for notification in notifications:
                    data = json.loads(notification.state)
                    state[data["record_id"]] = data
                    position["next"] = notification.id + 1
                return len(notifications)

            timed = protocol.timed_loop(pages, replay_page, spec.time_budget_s)
            extra["records_folded"] = len(state)

        app.close()
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


if __name__ == "__main__":
    sys.exit(protocol.main_guard(PEER, version, body))
