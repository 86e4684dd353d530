"""Memory Fabric: an event-sourced memory store for AI agents.

Every write is an event in an append-only, hash-chained JSONL log; views (in memory,
SQLite FTS5, S3) are derived from it and can be rebuilt at any time.
"""

from __future__ import annotations

from fabric.errors import FabricError
from fabric.events import Embedding
from fabric.fabric import MemoryFabric, Snapshot
from fabric.model import EmbeddingV1, MemoryRecord, MemoryType, StorageTier

__version__ = "0.1.0"

__all__ = [
    "Embedding",
    "EmbeddingV1",
    "FabricError",
    "MemoryFabric",
    "MemoryRecord",
    "MemoryType",
    "Snapshot",
    "StorageTier",
    "__version__",
]
