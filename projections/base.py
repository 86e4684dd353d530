"""The narrow protocol every view implements. A view adds storage, never behaviour.

A view is a pure function of a prefix of the log: it remembers the last log position it
has applied (`position`, 0 when empty) *in the same transaction* as the data derived
from it, so applying is exactly-once even across crashes. Everything a view stores is
what `fabric.state.evolve` says; everything a search returns is what `fabric.query`
says. `reset` forgets everything, and a replay from position 0 rebuilds the view.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from fabric.query import Hit, Query
from fabric.state import Change, Record

__all__ = ["Change", "Hit", "Projection"]


class Projection(Protocol):
    name: str
    #: True when applying is cheap enough to do right after each append (in-process views).
    eager: bool

    def position(self) -> int:
        """Last log seq applied; 0 for an empty view."""
        ...

    def apply(self, changes: Sequence[Change], position: int) -> None:
        """Fold ``changes`` in and move to ``position`` (>= their last seq), atomically."""
        ...

    def reset(self) -> None:
        """Forget everything (position 0), ready for a replay."""
        ...

    def get(self, record_id: str) -> Record | None: ...

    def search(self, query: Query) -> list[Hit]: ...

    def list(self, limit: int | None, offset: int) -> list[Record]:
        """Live records in creation order."""
        ...

    def count(self) -> int: ...

    def close(self) -> None: ...
