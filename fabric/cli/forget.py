"""``fabric forget``: erase a record (right to erasure), its history in the log included."""

from __future__ import annotations

from typing import Annotated

import typer

from fabric.cli.common import Backend, DataDir, Json, console, emit_json, open_fabric
from fabric.errors import RecordNotFoundError
from fabric.forget import find_lines, id_needle, is_redacted


def forget(
    record_id: Annotated[str, typer.Argument(help="The id of the record to erase.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the log: no personal data here).")] = "",
    data_dir: DataDir = None,
    backend: Backend = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be erased; change nothing.")] = False,
    json: Json = False,
) -> None:
    """Erase a record: views drop it and the log keeps only that its events happened, not what they
    held (with encryption, its data key is destroyed). Unlike `delete`, history cannot bring it back.
    Exit 3 if the id never named a record."""
    with open_fabric(data_dir, backend) as fabric:
        lines = [env for env in find_lines(fabric.log, id_needle(record_id)) if env.id == record_id]
        if not lines:
            raise RecordNotFoundError(record_id)
        held = [env for env in lines if not is_redacted(env) and env.type != "forgotten" and bytes(env.data) != b"{}"]
        fabric.count()  # catch the view up (retrieve would count as an access: a write)
        live = fabric.view.get(record_id) is not None
        done = False if dry_run else fabric.forget(record_id, reason)
    summary = {"id": record_id, "dry_run": dry_run, "forgotten": done, "live_before": live,
               "events": len(lines), "events_to_erase": len(held)}
    if json:
        emit_json(summary)
        return
    if dry_run:
        state = "live" if live else "not live (deleted or forgotten)"
        console.print(f"would forget {record_id} ({state}): erase the payload of {len(held)} of its "
                      f"{len(lines)} events in the log")
    elif done:
        console.print(f"forgotten: {record_id}; {len(held)} events erased from the log")
    else:
        console.print(f"{record_id} was already forgotten; its erasure from the log is complete")


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)
