"""``fabric migrate``: serve a store from another backend, then prove parity (exit 1 if it fails)."""

from __future__ import annotations

from typing import Annotated

import typer

from fabric.cli.common import DataDir, Json, console, emit_json
from fabric.cli.progress import progress_bar
from fabric.migrate import migrate as run_migration


def migrate(
    source: Annotated[str, typer.Option("--from", help="Backend that serves the store now.")],
    target: Annotated[str, typer.Option("--to", help="Backend to serve it from.")],
    data_dir: DataDir = None,
    target_data_dir: Annotated[str | None, typer.Option(
        "--target-data-dir", help="Copy the records into another store there (default: same data_dir, "
                                  "the log is shared and the target view is projected from it).")] = None,
    key: Annotated[str | None, typer.Option("--key", envvar="IOA_FABRIC_KEY", help="Key of an encrypted store.",
                                            show_envvar=True)] = None,
    json: Json = False,
) -> None:
    """Migrate between backends (a replay of the log), resumable, and check parity afterwards: the
    same records (count and a digest per record) on both sides."""
    import os  # noqa: PLC0415

    path = data_dir or os.environ.get("IOA_FABRIC_ROOT") or "./artifacts/memory"
    with progress_bar(f"{source} -> {target}", "items", enabled=not json) as update:
        report = run_migration(source, target, path, target_data_dir=target_data_dir, key=key, progress=update)
    p = report.parity
    if json:
        emit_json(report.to_dict())
    else:
        if report.replay is not None:
            r = report.replay
            how = "rebuilt" if r.rebuilt else "caught up"
            console.print(f"{target} view {how} from the shared log: {r.events:,} events in {r.seconds:.2f} s "
                          f"({r.events_per_second:,.0f} events/s)")
        else:
            console.print(f"copied {report.copied:,} records to {report.target_data_dir} "
                          f"({report.skipped:,} were already there)")
        if p.ok:
            console.print(f"[green]parity OK[/green]: {p.source_count:,} records on both sides, "
                          f"store digest {p.source_digest[:16]}…")
        else:
            console.print(f"[red]parity MISMATCH[/red]: {p.source_count:,} vs {p.target_count:,} records; "
                          f"missing {p.missing[:5]}, extra {p.extra[:5]}, different {p.different[:5]}")
    if not p.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
