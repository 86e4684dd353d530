"""The conformance suite's fixtures: one store per backend, the same cases for all of them.

Adding a backend is one line in `BACKENDS`: its name and how to make its config (the
factory gets pytest's ``request``, so it can ask for other fixtures, e.g. an S3 bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fabric.fabric import MemoryFabric

ConfigFactory = Callable[[pytest.FixtureRequest, Path], tuple[str, dict[str, Any]]]

#: backend param -> (backend name, config). "sqlite-pruned" makes nearly every word a head term with a
#: tiny impact list, so the pruned route and its fallbacks answer the same cases.
BACKENDS: dict[str, ConfigFactory] = {
    "local_jsonl": lambda request, path: ("local_jsonl", {"data_dir": str(path)}),
    "sqlite": lambda request, path: ("sqlite", {"data_dir": str(path)}),
    "sqlite-pruned": lambda request, path: ("sqlite", {"data_dir": str(path), "head_df": 2, "impact_list_size": 3}),
    # s3: a fresh bucket per test on the session's real server (s3_env points boto3 at it); reads stay local
    "s3": lambda request, path: ("s3", {"data_dir": str(path), "prefix": "conformance/", "ship_interval": 0.05,
                                        "bucket_name": [request.getfixturevalue(f) for f in ("s3_env", "s3_bucket")][1]}),
}

REFERENCE = "local_jsonl"

FabricFactory = Callable[..., MemoryFabric]


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_fabric(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[FabricFactory]:
    """``make_fabric(path=None, param=None)``: a store of this test's backend (or of ``param``) on ``path``."""
    opened: list[MemoryFabric] = []

    def make(path: Path | None = None, param: str | None = None) -> MemoryFabric:
        name, config = BACKENDS[param or backend](request, path or tmp_path / "store")
        config.setdefault("durability", "none")
        fabric = MemoryFabric(backend=name, config=config)
        opened.append(fabric)
        return fabric

    yield make
    for fabric in opened:
        fabric.close()


@pytest.fixture
def fabric(make_fabric: FabricFactory) -> MemoryFabric:
    return make_fabric()


@pytest.fixture
def reference(make_fabric: FabricFactory, fabric: MemoryFabric) -> Callable[[], MemoryFabric]:
    """The in-memory view over the same log as ``fabric``, opened on demand (after the writes)."""

    def open_reference() -> MemoryFabric:
        fabric.flush()
        return make_fabric(Path(fabric.data_dir), REFERENCE)

    return open_reference
