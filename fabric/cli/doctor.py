"""``fabric doctor``: check a store end to end (see `fabric.doctor`); exit 0 healthy, 1 partial, 2 misconfigured."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from fabric.cli.common import Backend, DataDir, Json, console, emit_json, err_console
from fabric.cli.restore import Bucket, Endpoint, Key, Prefix, Region, s3_config


def doctor(
    backend: Backend = None,
    data_dir: DataDir = None,
    bucket: Bucket = None,
    prefix: Prefix = None,
    region: Region = None,
    endpoint: Endpoint = None,
    key: Key = None,
    records: Annotated[int, typer.Option("--records", min=1, max=1000, help="Test records to write (s3).")] = 25,
    metrics: Annotated[str, typer.Option(
        "--metrics", envvar="IOA_FABRIC_METRICS", show_envvar=True,
        help="Metrics file to append a line to ('' for none).")] = "artifacts/lens/memory_fabric/metrics.jsonl",
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show every check and its timing.")] = False,
    json: Json = False,
) -> int:
    """Check that a store works. s3: write test records to a scratch prefix, read them back, restore them,
    delete them, and report how far the local store is behind the bucket. local_jsonl/sqlite: verify the
    log's hash chain and the view's freshness. Exit codes: 0 healthy, 1 partial, 2 misconfigured."""
    from fabric.backends import check_backend  # noqa: PLC0415
    from fabric.doctor import append_metrics, doctor_local, doctor_s3  # noqa: PLC0415

    name = check_backend(backend or os.environ.get("IOA_FABRIC_BACKEND") or "local_jsonl")
    if name == "s3":
        report = doctor_s3(s3_config(bucket, prefix, region, endpoint), key=key, records=records,
                           data_dir=data_dir)
    else:
        report = doctor_local(name, data_dir, key=key)
    written = append_metrics(report, metrics) if metrics else None
    if json:
        emit_json({**report.to_dict(), "metrics_file": str(written) if written else None})
        return report.exit_code
    style = {"healthy": "green", "partial": "yellow"}.get(report.status, "red")
    for check in report.checks:
        if verbose or not check.ok:
            took = f" ({check.seconds * 1000:.0f} ms)" if check.seconds is not None else ""
            mark = "[green]ok[/green]" if check.ok else "[red]FAILED[/red]"
            console.print(f"  {mark} {check.name}: {check.detail}{took}")
    if report.misconfigured:
        err_console.print(f"[red]misconfigured:[/red] {report.misconfigured}")
    console.print(f"[{style}]{report.status}[/{style}] ({name})" + (f"; metrics appended to {written}"
                                                                    if verbose and written else ""))
    return report.exit_code


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
