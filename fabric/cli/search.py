"""``fabric search``: full-text search with filters."""

from __future__ import annotations

from typing import Annotated

import msgspec
import typer

from fabric.cli.common import Backend, DataDir, Json, console, emit_json, open_fabric, record_json, records_table
from fabric.errors import InvalidQueryError
from fabric.model import to_public


def search(
    query: Annotated[str, typer.Argument(help="Words to look for (all must occur).")],
    limit: Annotated[int, typer.Option("--limit", "-n")] = 10,
    offset: Annotated[int, typer.Option("--offset")] = 0,
    memory_type: Annotated[str | None, typer.Option("--type")] = None,
    storage_tier: Annotated[str | None, typer.Option("--tier")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="Only records with this tag (repeatable).")] = None,
    where: Annotated[str | None, typer.Option("--where", help='Metadata filter as JSON, e.g. \'{"user": "u1"}\'.')] = None,
    data_dir: DataDir = None,
    backend: Backend = None,
    json: Json = False,
) -> None:
    """Search records, best match first."""
    flt = None
    if where is not None:
        try:
            flt = msgspec.json.decode(where)
        except msgspec.DecodeError as e:
            raise InvalidQueryError(f"--where is not valid JSON: {e}") from e
    with open_fabric(data_dir, backend) as fabric:
        hits = fabric.search_hits(query, limit, memory_type, storage_tier, offset=offset, tags=tag, where=flt)
    records = [to_public(h.record) for h in hits]
    if json:
        emit_json([record_json(r, h.score) for r, h in zip(records, hits)])
        return
    console.print(records_table(records, f"{len(records)} result(s) for {query!r}", [h.score for h in hits]))


def register(app: typer.Typer) -> None:
    app.command("search")(search)
