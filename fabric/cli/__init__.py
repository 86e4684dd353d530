"""The ``fabric`` command line. One module per subcommand; this module alone turns errors into exit codes.

Exit codes: 0 success; 1 a check failed (chain broken, parity mismatch, unhealthy);
2 bad usage or configuration (unknown backend, missing data_dir, bad input, a wrong or
missing key); 3 not found (no such record); 4 the store is damaged (corrupt log or view,
tampered ciphertext).
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from fabric.errors import (
    ConfigurationError,
    CryptoError,
    CorruptLogError,
    FabricError,
    InvalidInputError,
    RecordNotFoundError,
    TamperedDataError,
    ViewError,
)

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_DAMAGED = 4

app = typer.Typer(
    name="fabric",
    help=__doc__,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _register() -> None:
    from fabric.cli import demo, get, list_cmd, search, store  # noqa: PLC0415

    for module in (demo, store, get, search, list_cmd):
        module.register(app)
    from fabric.cli import compact, forget, rotate_key  # noqa: PLC0415 - encryption and erasure (issue #6)

    for module in (forget, rotate_key, compact):
        module.register(app)
    from fabric.cli import migrate, rebuild  # noqa: PLC0415 - the sqlite view (issue #4)

    for module in (rebuild, migrate):
        module.register(app)
    from fabric.cli import audit, import_cmd, replay, stats, tail  # noqa: PLC0415 - operator tools (issue #7)

    for module in (replay, audit, tail, stats, import_cmd):
        module.register(app)
    from fabric.cli import doctor, restore  # noqa: PLC0415 - the s3 backend (issue #5)

    for module in (doctor, restore):
        module.register(app)


def exit_code_for(error: FabricError) -> int:
    if isinstance(error, RecordNotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, (CorruptLogError, ViewError, TamperedDataError)):
        return EXIT_DAMAGED
    if isinstance(error, (ConfigurationError, InvalidInputError, CryptoError)):
        return EXIT_USAGE
    return EXIT_CHECK_FAILED


def main(argv: list[str] | None = None) -> NoReturn:
    _register()
    try:
        result = app(args=argv, standalone_mode=False)
    except FabricError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(exit_code_for(e)) from None
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        raise SystemExit(EXIT_CHECK_FAILED) from None
    except Exception as e:  # click usage errors
        if _is_click_error(e):
            e.show()  # type: ignore[attr-defined]
            raise SystemExit(EXIT_USAGE) from None
        raise
    raise SystemExit(result if isinstance(result, int) else EXIT_OK)


def _is_click_error(error: Exception) -> bool:
    """Recent typer vendors click as ``typer._click``: its errors are not ``click``'s."""
    import importlib  # noqa: PLC0415

    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            base = importlib.import_module(module).ClickException
        except ImportError:
            continue
        if isinstance(error, base):
            return True
    return False
