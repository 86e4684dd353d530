"""Noticing segments rewritten in place (forget, compaction), by content: inode numbers come back."""

from __future__ import annotations

import os
from pathlib import Path

from fabric.ship_state import ShippedSegments


def lines(n: int, word: bytes = b"x") -> list[bytes]:
    return [b'{"seq":%d,"v":"%s"}\n' % (i, word) for i in range(1, n + 1)]


def test_a_complete_segment_is_verified_once_then_watched(tmp_path: Path) -> None:
    seg = tmp_path / "1"
    body = lines(4)
    seg.write_bytes(b"".join(body))
    shipped = ShippedSegments()
    shipped.note(1, 1, b"".join(body[:2]))
    shipped.note(1, 3, b"".join(body[2:]))
    path_of = lambda s: tmp_path / str(s)  # noqa: E731
    assert shipped.check([1, 5], 4, path_of) == []
    assert shipped.check([1, 5], 3, path_of) == []  # (not fully shipped: not looked at)
    os.utime(seg, ns=(1, 1))  # any later change of the file is a rewrite
    assert shipped.check([1, 5], 4, path_of) == [1]


def test_a_rewrite_that_reuses_the_inode_is_noticed(tmp_path: Path) -> None:
    seg = tmp_path / "1"
    body = lines(4)
    seg.write_bytes(b"".join(body))
    shipped = ShippedSegments()
    shipped.note(1, 1, b"".join(body[:2]))  # shipped while the segment was active...
    inode = os.stat(seg).st_ino
    with open(seg, "r+b") as f:  # ...then rewritten before the rest was shipped: same inode, other bytes
        f.write(b"".join(lines(4, b"y")))
    assert os.stat(seg).st_ino == inode
    shipped.note(1, 3, b"".join(lines(4, b"y")[2:]))
    assert shipped.check([1, 5], 4, lambda s: tmp_path / str(s)) == [1]


def test_a_segment_first_seen_mid_way_is_shipped_again_when_sealed(tmp_path: Path) -> None:
    (tmp_path / "1").write_bytes(b"".join(lines(4)))
    shipped = ShippedSegments()
    shipped.note(1, 3, b"".join(lines(4)[2:]))  # its start was shipped by a process whose cache is lost
    assert shipped.check([1, 5], 4, lambda s: tmp_path / str(s)) == [1]


def test_the_state_survives_a_restart(tmp_path: Path) -> None:
    path_of = lambda s: tmp_path / str(s)  # noqa: E731
    (tmp_path / "1").write_bytes(b"".join(lines(4)))
    (tmp_path / "5").write_bytes(b"".join(lines(2)))
    before = ShippedSegments()
    before.note(1, 1, b"".join(lines(4)))
    before.note(5, 5, b"".join(lines(2)[:1]))  # the active segment, half shipped
    assert before.check([1, 5], 5, path_of) == []
    saved = before.to_json()

    after = ShippedSegments()
    after.load(saved, path_of)
    after.note(5, 6, b"".join(lines(2)[1:]))
    (tmp_path / "7").write_bytes(b"")
    assert after.check([1, 5, 7], 6, path_of) == []  # segment 5 continued from its saved hash

    (tmp_path / "5").write_bytes(b"".join(lines(2, b"z")))  # rewritten while nobody watched
    again = ShippedSegments()
    again.load(saved, path_of)
    again.note(5, 6, b"".join(lines(2, b"z")[1:]))
    assert again.check([1, 5, 7], 6, path_of) == [5]
