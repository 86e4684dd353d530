"""A torn tail, cut at every byte offset: reopen recovers to the last whole batch, says so, and writes on."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_dense, log_seqs, raw_lines, segment_files

from fabric import MemoryFabric
from fabric.events import Stored, encode_payload
from fabric.log import EventLog, Recovery


def entry(i: int) -> tuple[str, str, bytes]:
    return ("stored", f"r{i}", encode_payload(Stored(content=f"record {i} ünï ☃", tags=["t"])))


def _reopen_and_check(data_dir: Path, seg: Path, good_end: int, dropped: int, reason: str, last_good_seq: int) -> None:
    with EventLog(data_dir) as log:
        assert log.recovered == [Recovery(segment=seg.name, offset=good_end, dropped_bytes=dropped, reason=reason)]
        assert log.last_seq == last_good_seq
        assert seg.stat().st_size == good_end
        (env,) = log.append([entry(10_000)])
        assert env.seq == last_good_seq + 1
        report = log.verify()
        assert report.last_seq == env.seq and report.last_hash == env.hash
    assert_dense(log_seqs(data_dir))
    with EventLog(data_dir) as again:
        assert again.recovered == []  # nothing left to repair
        assert again.last_seq == last_good_seq + 1


def test_torn_last_line_at_every_offset(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    with EventLog(data_dir) as log:
        for i in range(6):
            log.append([entry(i)])
        last_seq = log.last_seq
    (seg,) = segment_files(data_dir)
    full = seg.read_bytes()
    last = raw_lines(data_dir)[-1]
    assert last.offset + len(last.raw) == len(full)
    for cut in range(last.offset + 1, len(full)):  # 1 byte of the line .. all of it but its newline
        seg.write_bytes(full[:cut])
        _reopen_and_check(data_dir, seg, last.offset, cut - last.offset, "torn last line", last_seq - 1)


def test_incomplete_last_batch_at_every_offset(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    with EventLog(data_dir) as log:
        log.append([entry(0)])
        log.append([entry(1), entry(2)])
        before_batch = log.last_seq
        log.append([entry(i) for i in range(3, 7)])
    (seg,) = segment_files(data_dir)
    full = seg.read_bytes()
    lines = raw_lines(data_dir)
    batch = lines[-4:]
    assert [ln.env.get("b", 0) for ln in batch] == [3, 2, 1, 0]
    start = batch[0].offset
    first_line_end = batch[1].offset
    for cut in range(start + 1, len(full)):
        seg.write_bytes(full[:cut])
        reason = "incomplete batch" if cut >= first_line_end else "torn last line"
        _reopen_and_check(data_dir, seg, start, cut - start, reason, before_batch)


def test_torn_tail_that_empties_the_last_segment(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    with EventLog(data_dir, segment_bytes=1024) as log:
        i = 0
        while len(log.segments()) < 3:
            log.append([entry(i)])
            i += 1
        log.append([entry(500), entry(501), entry(502)])  # the only batch of the newest segment
        last_seq = log.last_seq
    seg = segment_files(data_dir)[-1]
    full = seg.read_bytes()
    mine = [ln for ln in raw_lines(data_dir) if ln.segment == seg]
    assert len(mine) == 3 and mine[0].offset == 0
    for cut in range(1, len(full)):
        seg.write_bytes(full[:cut])
        reason = "incomplete batch" if cut >= len(mine[0].raw) else "torn last line"
        with EventLog(data_dir, segment_bytes=1024) as log:
            assert log.recovered[0].offset == 0 and log.recovered[0].segment == seg.name
            assert log.recovered[0].reason == reason
            assert log.last_seq == last_seq - 3
            assert seg.stat().st_size == 0
            (env,) = log.append([entry(9)])
            assert env.seq == last_seq - 2
            log.verify()
        assert_dense(log_seqs(data_dir))
        seg.write_bytes(full)  # back to the full batch for the next cut


@pytest.mark.parametrize("tail", [b"\x00" * 100, b"{", b'{"seq":', b"garbage without newline", b"\xff\xfe"])
def test_torn_tail_through_the_facade(tmp_path: Path, tail: bytes) -> None:
    """Whatever a crash (or a power cut's zero-filled block) leaves after the last newline is cut and reported."""
    data_dir = tmp_path / "store"
    with MemoryFabric(config={"data_dir": str(data_dir), "durability": "always"}) as f:
        ids = [f.store(f"memory {i}") for i in range(5)]
        ids += f.store_many([{"content": f"batch {i}"} for i in range(3)])
    seg = segment_files(data_dir)[-1]
    size = seg.stat().st_size
    with open(seg, "ab") as out:
        out.write(tail)
    with MemoryFabric(config={"data_dir": str(data_dir)}) as f:
        assert [r.id for r in f.list_all()] == ids
        recovered = f.get_stats()["recovered"]
        assert recovered == [{"segment": seg.name, "offset": size, "dropped_bytes": len(tail),
                              "reason": "torn last line"}]
        f.store("after recovery")
    with EventLog(data_dir, create=False) as log:
        assert log.verify().events == len(raw_lines(data_dir))


def test_a_reader_open_during_the_tear_sees_only_whole_batches(tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    with EventLog(data_dir) as writer:
        writer.append([entry(0)])
        with EventLog(data_dir) as reader:
            writer.append([entry(1), entry(2), entry(3)])
            (seg,) = segment_files(data_dir)
            full = seg.read_bytes()
            start = raw_lines(data_dir)[-3].offset
            for cut in range(start, len(full)):
                seg.write_bytes(full[:cut])
                assert [e.seq for e in reader.read()] == [1, 2]
            seg.write_bytes(full)
            assert [e.seq for e in reader.read()] == [1, 2, 3, 4, 5]
