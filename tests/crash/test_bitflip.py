"""Damage in the middle of the log is never skipped or "repaired": it is an error naming segment and offset.

Two kinds of flip, two detectors:
- a flip that breaks the JSON (or the seq) of a line is caught as soon as the line is read;
- a flip that still parses (a letter of the content, a hex digit of a hash) is caught by the
  line's own hash: on every read (views catching up), and by `verify()`, which also checks
  the links, and names the first bad line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Line, raw_lines, seeded, segment_files

from fabric import MemoryFabric
from fabric.errors import ChainBrokenError, CorruptLogError
from fabric.events import Stored, encode_payload
from fabric.log import EventLog, segment_name

SEGMENT_BYTES = 2048


def entry(i: int) -> tuple[str, str, bytes]:
    return ("stored", f"r{i}", encode_payload(Stored(content=f"record {i} abcdefgh", tags=["t"], metadata=_meta(i))))


def _meta(i: int):  # type: ignore[no-untyped-def]
    import msgspec

    return msgspec.Raw(msgspec.json.encode({"i": i, "flag": i % 2 == 0}))


@pytest.fixture
def store(tmp_path: Path) -> Path:
    data_dir = tmp_path / "store"
    with EventLog(data_dir, segment_bytes=SEGMENT_BYTES) as log:
        for i in range(0, 60, 2):
            log.append([entry(i)] if i % 4 else [entry(i), entry(i + 1)])
        i = 100
        while log.last_seq - log.segments()[-1] < 4:  # the newest segment gets a few lines too
            log.append([entry(i)])
            i += 1
    assert len(segment_files(data_dir)) >= 4
    return data_dir


def _target(data_dir: Path, which: str) -> tuple[Line, Line]:
    """A line in the middle of the first or of the last segment, and the line after it."""
    lines = raw_lines(data_dir)
    segs = segment_files(data_dir)
    seg = segs[0] if which == "first" else segs[-1]
    mine = [i for i, ln in enumerate(lines) if ln.segment == seg]
    assert len(mine) >= 4
    idx = mine[len(mine) // 2]
    return lines[idx], lines[idx + 1]


def _flip(path: Path, offset: int, new: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset] = new
    path.write_bytes(bytes(data))
    return bytes(data)


def test_flip_that_still_parses_is_caught_by_verify(store: Path) -> None:
    line, _ = _target(store, "first")
    pos = line.raw.index(b"abcdefgh")
    _flip(line.segment, line.offset + pos, ord("X"))
    with EventLog(store) as log:
        assert len(list(log.read(verify=False))) == len(raw_lines(store))  # JSON and seqs are fine
        with pytest.raises(ChainBrokenError) as on_read:  # but the line's own hash is not
            list(log.read())
        assert (on_read.value.segment, on_read.value.offset) == (line.segment.name, line.offset)
        with pytest.raises(ChainBrokenError) as info:
            log.verify()
    err = info.value
    assert err.segment == line.segment.name and err.offset == line.offset and err.seq == line.env["seq"]
    assert line.segment.name in str(err) and f"byte offset {line.offset}" in str(err)


def test_flip_of_a_hash_digit_is_caught_by_verify_at_that_line(store: Path) -> None:
    line, _ = _target(store, "first")
    pos = line.raw.index(b'"hash":"') + len(b'"hash":"') + 5
    old = line.raw[pos]
    _flip(line.segment, line.offset + pos, ord("0") if old != ord("0") else ord("1"))
    with EventLog(store) as log:
        with pytest.raises(ChainBrokenError) as info:
            log.verify()
    assert (info.value.segment, info.value.offset) == (line.segment.name, line.offset)


def test_flip_that_breaks_json_is_caught_on_read(store: Path) -> None:
    line, _ = _target(store, "first")
    _flip(line.segment, line.offset + line.raw.index(b'"type"'), ord("#"))
    with EventLog(store) as log:  # opening checks only the newest segment's tail
        with pytest.raises(CorruptLogError) as info:
            list(log.read())
        assert (info.value.segment, info.value.offset) == (line.segment.name, line.offset)
        with pytest.raises(CorruptLogError) as info2:
            log.verify()
        assert (info2.value.segment, info2.value.offset) == (line.segment.name, line.offset)
    with pytest.raises(CorruptLogError) as info3:
        MemoryFabric(config={"data_dir": str(store)})  # replaying the log reads every line
    assert info3.value.segment == line.segment.name and info3.value.offset == line.offset


def test_damage_in_the_newest_segment_fails_the_open_and_is_not_cut(store: Path) -> None:
    line, _ = _target(store, "last")
    damaged = _flip(line.segment, line.offset + 1, ord("!"))
    with pytest.raises(CorruptLogError) as info:
        EventLog(store)
    assert (info.value.segment, info.value.offset) == (line.segment.name, line.offset)
    assert line.segment.read_bytes() == damaged, "damage before the tail must never be truncated away"
    with pytest.raises(CorruptLogError):
        MemoryFabric(config={"data_dir": str(store)})
    assert line.segment.read_bytes() == damaged


def test_every_single_bit_flip_of_a_line_is_detected_where_it_is(store: Path) -> None:
    """Every one of the 8 bits of every byte of a line in an older segment, one flip at a time."""
    line, _ = _target(store, "first")
    original = line.segment.read_bytes()
    undetected: list[tuple[int, int]] = []
    for i, bit in ((i, 1 << b) for i in range(len(line.raw)) for b in range(8)):
        _flip(line.segment, line.offset + i, line.raw[i] ^ bit)
        try:
            with EventLog(store) as log:
                log.verify()
            undetected.append((i, bit))
        except CorruptLogError as e:
            assert (e.segment, e.offset) == (line.segment.name, line.offset), \
                f"byte {i} ^ {bit:#x}: reported at {e.segment}:{e.offset}"
        finally:
            line.segment.write_bytes(original)
    assert undetected == [], f"flips not detected (byte, bit): {undetected}"


def test_every_single_bit_flip_in_the_newest_segment_is_detected(store: Path) -> None:
    rng = seeded("bitflip-last")
    line, after = _target(store, "last")
    original = line.segment.read_bytes()
    for i in range(len(line.raw)):
        bit = 1 << rng.randrange(8)
        damaged = _flip(line.segment, line.offset + i, line.raw[i] ^ bit)
        try:
            try:
                log = EventLog(store)
            except CorruptLogError as e:  # caught while opening: the line itself, or the next one's link to it
                assert e.segment == line.segment.name and e.offset in (line.offset, after.offset), f"byte {i}"
                assert line.segment.read_bytes() == damaged, f"byte {i}: the open cut damaged data"
                continue
            with log:
                assert log.recovered == [], f"byte {i}: damage treated as a torn tail"
                with pytest.raises(CorruptLogError) as info:
                    log.verify()
                assert (info.value.segment, info.value.offset) == (line.segment.name, line.offset), f"byte {i}"
        finally:
            line.segment.write_bytes(original)


def test_a_missing_segment_is_an_error(store: Path) -> None:
    segs = segment_files(store)
    segs[1].unlink()
    with EventLog(store) as log:
        with pytest.raises(CorruptLogError) as info:
            list(log.read())
        assert info.value.segment == segment_name(int(segs[2].name[len("memory_run_"):-len(".jsonl")]))


def test_a_removed_line_breaks_the_chain(store: Path) -> None:
    line, _ = _target(store, "first")
    data = line.segment.read_bytes()
    line.segment.write_bytes(data[: line.offset] + data[line.offset + len(line.raw):])
    with EventLog(store) as log:
        with pytest.raises(CorruptLogError) as info:
            log.verify()
    assert info.value.segment == line.segment.name and info.value.offset == line.offset
