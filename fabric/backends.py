"""The backend registry: the one place where `fabric` names concrete projections.

Projections are imported on first use, so ``import fabric`` stays fast and an optional
dependency (boto3 for ``s3``) is only needed by those who use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from fabric.errors import ConfigurationError
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from projections.base import Projection

#: backend name -> "module:factory"; the factory takes (data_dir, config).
BACKENDS: Final[dict[str, str]] = {
    "local_jsonl": "projections.memory:open_view",
    "sqlite": "projections.sqlite_fts:open_view",
    "s3": "projections.s3:open_view",
}

#: Where each backend keeps its log when no data_dir is given (the seed's paths).
DEFAULT_DATA_DIRS: Final[dict[str, str]] = {
    "local_jsonl": "./artifacts/memory",
    "sqlite": "./artifacts/memory",
    "s3": "./artifacts/memory/s3_fallback",
}


def check_backend(name: Any) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ConfigurationError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    return name


def open_view(name: str, data_dir: Path, config: Mapping[str, Any]) -> "Projection":
    target = BACKENDS[check_backend(name)]
    module_name, _, factory = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise ConfigurationError(f"backend {name!r} is not available: {e}",
                                 hint="install the extra it needs, e.g. pip install 'memory-fabric[s3]'") from e
    view: Projection = getattr(module, factory)(data_dir, config)
    return view
