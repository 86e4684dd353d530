"""``fabric rebuild``: throw a view away and project it again from the log (the bulk path)."""

from __future__ import annotations

from typing import Annotated

import typer

from fabric.backends import check_backend
from fabric.cli.common import DataDir, Json, console, emit_json
from fabric.cli.progress import progress_bar
from fabric.migrate import project


def rebuild(
    view: Annotated[str, typer.Option("--view", "-v", help="Which backend's view: sqlite (or local_jsonl, s3).")],
    data_dir: DataDir = None,
    key: Annotated[str | None, typer.Option("--key", envvar="IOA_FABRIC_KEY", help="Key of an encrypted store.",
                                            show_envvar=True)] = None,
    json: Json = False,
) -> None:
    """Rebuild a view from scratch out of the log. Safe to interrupt: the old view stays until the
    new one is complete; just run it again."""
    import os  # noqa: PLC0415

    from fabric.errors import ConfigurationError  # noqa: PLC0415

    name = check_backend(view)
    path = data_dir or os.environ.get("IOA_FABRIC_ROOT") or "./artifacts/memory"
    if not os.path.isdir(path):
        raise ConfigurationError(f"data_dir {path!r} does not exist", hint="pass --data-dir")
    with progress_bar(f"rebuilding {name} view", "events", enabled=not json) as update:
        report = project(path, name, rebuild=True, key=key, progress=update)
    if json:
        emit_json(report.to_dict())
        return
    size = f", view file {report.view_bytes / 1e6:,.1f} MB" if report.view_bytes is not None else ""
    console.print(f"rebuilt the {name} view of {path}: {report.events:,} events -> {report.records:,} records "
                  f"in {report.seconds:.2f} s ({report.events_per_second:,.0f} events/s){size}; "
                  f"checkpoint at seq {report.position}")


def register(app: typer.Typer) -> None:
    app.command("rebuild")(rebuild)
