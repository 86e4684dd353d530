"""``fabric store``: store one record from the command line."""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer

from fabric.cli.common import Backend, DataDir, Json, console, emit_json, open_fabric
from fabric.errors import InvalidRecordError


def store(
    content: Annotated[str, typer.Argument(help="The text to remember ('-' reads standard input).")],
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag (repeatable).")] = None,
    metadata: Annotated[str | None, typer.Option("--metadata", "-m", help="Metadata as a JSON object.")] = None,
    memory_type: Annotated[str, typer.Option("--type", help="conversation, knowledge, context or metadata.")] = "conversation",
    storage_tier: Annotated[str, typer.Option("--tier", help="hot, cold or auto.")] = "hot",
    record_id: Annotated[str | None, typer.Option("--id", help="Use this id instead of a new one.")] = None,
    data_dir: DataDir = None,
    backend: Backend = None,
    json: Json = False,
) -> None:
    """Store a record and print its id."""
    if content == "-":
        import sys  # noqa: PLC0415

        content = sys.stdin.read()
    meta = None
    if metadata is not None:
        try:
            meta = msgspec.json.decode(metadata)
        except msgspec.DecodeError as e:
            raise InvalidRecordError(f"--metadata is not valid JSON: {e}") from e
    with open_fabric(data_dir, backend, must_exist=False) as fabric:
        rid = fabric.store(content, meta, tag or [], memory_type, storage_tier, record_id)
    if json:
        emit_json({"id": rid})
    else:
        console.print(rid)


def register(app: typer.Typer) -> None:
    app.command("store")(store)
