"""fabric.log: segment names, append and read, rolling, batches, verify, durability, reopen, many handles.

Real files under tmp_path throughout. Damage and crashes have their own suite (tests/crash/).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest
from helpers import ROOT, assert_dense, log_seqs, raw_lines, seeded, segment_files
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric import log as log_module
from fabric.errors import (
    ConfigurationError,
    FabricError,
    LogClosedError,
    LogWriteError,
    ReadOnlyError,
)
from fabric.events import StoreCreated, Stored, decode_payload, encode_payload
from fabric.log import (
    GENESIS_HASH,
    SEGMENT_PREFIX,
    SEGMENT_SUFFIX,
    Envelope,
    EventLog,
    data_digest,
    envelope_hash,
    parse_segment_name,
    segment_name,
)

SMALL = 1024


def entry(i: int, pad: int = 40) -> tuple[str, str, bytes]:
    return ("stored", f"r{i}", encode_payload(Stored(content=f"record {i} " + "x" * pad)))


def fill(log: EventLog, n: int, pad: int = 40) -> None:
    for i in range(n):
        log.append([entry(i, pad)])


# --- segment names ----------------------------------------------------------------------


@pytest.mark.parametrize("first", [1, 2, 9, 10, 12345, 10**19, 10**20 - 1])
def test_segment_name_round_trip(first: int) -> None:
    name = segment_name(first)
    assert name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)
    assert len(name) == len(SEGMENT_PREFIX) + 20 + len(SEGMENT_SUFFIX)
    assert parse_segment_name(name) == first


def test_segment_names_sort_in_log_order() -> None:
    firsts = [1, 2, 9, 10, 11, 99, 100, 1000, 123456789, 10**15]
    names = [segment_name(f) for f in firsts]
    assert sorted(names) == names
    assert [parse_segment_name(n) for n in sorted(names, reverse=True)] == sorted(firsts, reverse=True)


@pytest.mark.parametrize("name", [
    "memory_run_b2f5d972.jsonl",  # the seed's run files
    "memory_run_0000000000000000001.jsonl",  # 19 digits
    "memory_run_000000000000000000001.jsonl",  # 21 digits
    "memory_run_0000000000000000000a.jsonl",
    "memory_run_00000000000000000001.json",
    "memory_run_00000000000000000001.jsonl.tmp",
    "xmemory_run_00000000000000000001.jsonl",
    "memory_run_-0000000000000000001.jsonl",
    "memory_run_+0000000000000000001.jsonl",
    "memory_run_ 0000000000000000001.jsonl",
    "memory_run_" + "\u0661" * 20 + ".jsonl",  # Arabic-Indic digits: str.isdigit() says yes
    "memory_run_" + "\u00b2" * 20 + ".jsonl",  # superscript two: isdigit() yes, int() fails
    ".fabric.lock",
    "fabric.db",
    "",
])
def test_parse_segment_name_rejects_other_files(name: str) -> None:
    assert parse_segment_name(name) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_segment_name_is_none_or_round_trips(digits: str) -> None:
    name = SEGMENT_PREFIX + digits + SEGMENT_SUFFIX
    first = parse_segment_name(name)
    assert first is None or segment_name(first) == name


def test_foreign_files_in_data_dir_are_ignored(tmp_path: Path) -> None:
    seed = ROOT / "tools/peers/seed_samples/local_jsonl/memory_run_b2f5d972.jsonl"
    shutil.copy(seed, tmp_path / seed.name)
    (tmp_path / ("memory_run_" + "\u00b2" * 20 + ".jsonl")).write_text("junk\n")
    with EventLog(tmp_path) as log:
        fill(log, 3)
        assert log.segments() == [1]
        assert log.verify().events == 4


# --- append and read --------------------------------------------------------------------


def test_new_log_starts_with_store_created(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        assert log.last_seq == 1
        (env,) = list(log.read())
        assert env.seq == 1 and env.type == StoreCreated.TYPE and env.id == ""
        assert env.prev == GENESIS_HASH
        created = decode_payload(env.type, env.data)
        assert isinstance(created, StoreCreated) and created.log_id == log.writer
    assert [p.name for p in segment_files(tmp_path)] == [segment_name(1)]


def test_append_returns_envelopes_that_are_on_disk(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        envs = log.append([entry(1), entry(2)])
        assert [e.seq for e in envs] == [2, 3]
        assert [e.b for e in envs] == [1, 0]
        assert envs[1].prev == envs[0].hash
        assert all(envelope_hash(e) == e.hash for e in envs)
        assert log.append([]) == []
        assert log.last_seq == 3
    lines = raw_lines(tmp_path)
    assert [ln.env["hash"] for ln in lines[1:]] == [e.hash for e in envs]
    assert lines[1].env["b"] == 1 and "b" not in lines[2].env  # b=0 is left out of the line


def test_read_from_any_position(tmp_path: Path) -> None:
    with EventLog(tmp_path, segment_bytes=SMALL) as log:
        for i in range(30):
            log.append([entry(j) for j in range(1 + i % 3)])
        last = log.last_seq
        assert len(log.segments()) > 3
        readers = [log, EventLog(tmp_path)]  # the writer (with position hints) and a fresh handle
        try:
            for reader in readers:
                for start in range(0, last + 2):
                    assert [e.seq for e in reader.read(start)] == list(range(max(start, 1), last + 1))
                for start in range(1, last + 1, 5):
                    for stop in range(start, last + 1, 7):
                        assert [e.seq for e in reader.read(start, stop)] == list(range(start, stop + 1))
        finally:
            readers[1].close()


def test_read_located_gives_segment_and_byte_offset(tmp_path: Path) -> None:
    with EventLog(tmp_path, segment_bytes=SMALL) as log:
        fill(log, 40)
        located = [(segment_name(seg), off, env.seq) for env, seg, off in log.read_located()]
    on_disk = [(ln.segment.name, ln.offset, ln.env["seq"]) for ln in raw_lines(tmp_path)]
    assert located == on_disk


def test_segments_roll_at_size_bound(tmp_path: Path) -> None:
    with EventLog(tmp_path, segment_bytes=SMALL) as log:
        for i in range(60):
            log.append([entry(j, pad=i) for j in range(1 + i % 4)])
        last = log.last_seq
        firsts = log.segments()
    files = segment_files(tmp_path)
    assert len(files) >= 5
    assert [parse_segment_name(p.name) for p in files] == firsts
    lines = raw_lines(tmp_path)
    assert_dense([ln.env["seq"] for ln in lines])
    assert lines[-1].env["seq"] == last
    for path in files:
        mine = [ln for ln in lines if ln.segment == path]
        if not mine:
            assert path == files[-1], f"{path.name} is empty"  # only the segment just rolled to may be
            continue
        assert mine[0].env["seq"] == parse_segment_name(path.name)  # named after its first seq
        assert mine[-1].env.get("b", 0) == 0  # a batch never spans segments
    for path in files[:-1]:
        size = path.stat().st_size
        last_batch = _last_batch_bytes([ln for ln in lines if ln.segment == path])
        assert size >= SMALL and size - last_batch < SMALL  # rolled by the first batch that crossed the bound


def _last_batch_bytes(lines: list) -> int:  # type: ignore[type-arg]
    total = 0
    for i in range(len(lines) - 1, -1, -1):
        total += len(lines[i].raw)
        if i == 0 or lines[i - 1].env.get("b", 0) == 0:
            return total
    return total


def test_reading_across_segments_after_reopen(tmp_path: Path) -> None:
    with EventLog(tmp_path, segment_bytes=SMALL) as log:
        fill(log, 50)
        expected = [(e.seq, e.hash) for e in log.read()]
    with EventLog(tmp_path, segment_bytes=SMALL) as log:
        assert [(e.seq, e.hash) for e in log.read()] == expected
        assert log.verify().last_seq == 51


def test_a_batch_is_one_write_with_countdown(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        envs = log.append([entry(i) for i in range(5)])
    assert [e.b for e in envs] == [4, 3, 2, 1, 0]
    assert [ln.env.get("b", 0) for ln in raw_lines(tmp_path)[1:]] == [4, 3, 2, 1, 0]


def test_readers_never_see_part_of_a_batch(tmp_path: Path) -> None:
    """A batch half on disk (being written, or torn) is not handed out; the rest appears once complete."""
    with EventLog(tmp_path) as writer:
        writer.append([entry(0)])
        writer.append([entry(i) for i in range(1, 5)])
    (seg,) = segment_files(tmp_path)
    full = seg.read_bytes()
    lines = raw_lines(tmp_path)
    batch_start = lines[2].offset
    with EventLog(tmp_path) as reader:
        for cut in range(batch_start, len(full)):
            with open(seg, "r+b") as f:
                f.truncate(cut)
            assert [e.seq for e in reader.read()] == [1, 2], f"cut at {cut}"
            with open(seg, "r+b") as f:
                f.seek(cut)
                f.write(full[cut:])
        assert [e.seq for e in reader.read()] == [1, 2, 3, 4, 5, 6]


def test_check_refusal_writes_nothing(tmp_path: Path) -> None:
    class Refused(Exception):
        pass

    def refuse() -> None:
        raise Refused

    with EventLog(tmp_path) as log:
        fill(log, 2)
        before = (segment_files(tmp_path)[0].read_bytes(), log.last_seq)
        with pytest.raises(Refused):
            log.append([entry(7), entry(8)], check=refuse)
        assert (segment_files(tmp_path)[0].read_bytes(), log.last_seq) == before
        log.append([entry(9)])
        assert log.verify().last_seq == 4


def test_failed_write_is_undone_and_log_stays_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails half-way (disk full) leaves no partial batch and raises LogWriteError."""
    with EventLog(tmp_path) as log:
        fill(log, 2)
        seg = segment_files(tmp_path)[0]
        before = seg.read_bytes()
        real_write = os.write
        calls = {"n": 0}

        def half_then_full(fd: int, data: bytes | memoryview) -> int:
            if fd != log._fd:
                return real_write(fd, data)
            calls["n"] += 1
            if calls["n"] == 1:
                return real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(log_module.os, "write", half_then_full)
        with pytest.raises(LogWriteError) as info:
            log.append([entry(i) for i in range(4)])
        monkeypatch.undo()
        assert isinstance(info.value, OSError) and "nothing written" in str(info.value)
        assert info.value.hint == "free disk space"
        assert seg.read_bytes() == before
        assert log.last_seq == 3
        log.append([entry(5)])
        assert log.verify().last_seq == 4
    with EventLog(tmp_path) as again:
        assert again.recovered == []
        assert_dense([e.seq for e in again.read()])


# --- verify -----------------------------------------------------------------------------


def test_verify_reports_the_whole_chain(tmp_path: Path) -> None:
    with EventLog(tmp_path, segment_bytes=SMALL) as log:
        fill(log, 40)
        report = log.verify()
        last = list(log.read())[-1]
    files = segment_files(tmp_path)
    assert report.events == 41 and report.last_seq == 41
    assert report.segments == len(files) > 1
    assert report.bytes == sum(p.stat().st_size for p in files)
    assert report.last_hash == last.hash


def test_chain_hash_covers_digest_so_payload_can_be_redacted(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        (env,) = log.append([entry(1)])
    redacted = msgspec.structs.replace(env, data=msgspec.Raw(b'{"redacted":true}'), dd=data_digest(bytes(env.data)))
    assert envelope_hash(redacted) == env.hash
    tampered = msgspec.structs.replace(env, data=msgspec.Raw(b'{"redacted":true}'))
    assert envelope_hash(tampered) != env.hash


def test_envelope_line_is_plain_json(tmp_path: Path) -> None:
    with EventLog(tmp_path) as log:
        log.append([entry(1)])
    line = raw_lines(tmp_path)[1]
    assert set(line.env) == {"seq", "ts", "writer", "type", "id", "data", "prev", "hash"}
    assert msgspec.json.decode(line.raw, type=Envelope).seq == 2


# --- durability -------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["always", "batch", "none"])
def test_every_durability_mode_leaves_everything_readable(tmp_path: Path, durability: str) -> None:
    with EventLog(tmp_path, durability=durability, segment_bytes=SMALL) as log:  # type: ignore[arg-type]
        for i in range(25):
            log.append([entry(i), entry(i + 100)])
        # bytes reach the OS on every append: another handle sees them before any flush
        with EventLog(tmp_path, create=False) as other:
            assert other.last_seq == 51
    with EventLog(tmp_path, create=False) as log:
        assert log.recovered == []
        assert log.verify().last_seq == 51
        expected = [f"r{i}" for i in range(25)] + [f"r{i + 100}" for i in range(25)]
        assert sorted(e.id for e in log.read(2)) == sorted(expected)


def test_always_is_synced_when_append_returns_even_under_concurrency(tmp_path: Path) -> None:
    errors: list[str] = []
    with EventLog(tmp_path, durability="always") as log:
        def work(t: int) -> None:
            for i in range(40):
                (env,) = log.append([entry(t * 1000 + i)])
                if log.synced_seq < env.seq:
                    errors.append(f"seq {env.seq} acknowledged before fsync (synced {log.synced_seq})")

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert log.synced_seq == log.last_seq == 161


def test_batch_mode_fsyncs_within_the_interval_without_flush(tmp_path: Path) -> None:
    with EventLog(tmp_path, durability="batch", sync_interval=0.005) as log:
        for _round in range(3):
            fill(log, 5)
            target = log.last_seq
            deadline = time.monotonic() + 10.0
            while log.synced_seq < target and time.monotonic() < deadline:
                time.sleep(0.001)
            assert log.synced_seq >= target, "the background fsync never came"


def test_none_mode_syncs_only_on_flush(tmp_path: Path) -> None:
    with EventLog(tmp_path, durability="none") as log:
        synced = log.synced_seq
        fill(log, 5)
        time.sleep(0.05)  # give a (wrong) background fsync every chance to happen
        assert log.synced_seq == synced == 1
        log.flush()
        assert log.synced_seq == log.last_seq == 6


def test_flush_in_none_mode_makes_rolled_segments_durable_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`flush()` promises everything appended so far is durable: that includes segments rolled since."""
    synced: set[int] = set()
    real = os.fdatasync

    def spy(fd: int) -> None:
        synced.add(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(log_module.os, "fdatasync", spy)
    with EventLog(tmp_path, durability="none", segment_bytes=SMALL) as log:
        fill(log, 60)
        assert len(log.segments()) >= 3
        log.flush()
        missing = [p.name for p in segment_files(tmp_path) if p.stat().st_size and p.stat().st_ino not in synced]
        assert missing == []


def test_creating_a_log_fsyncs_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new segment's directory entry must be durable, or a power cut can take the whole file."""
    dirs: list[int] = []
    real = os.fsync

    def spy(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            dirs.append(st.st_ino)
        real(fd)

    monkeypatch.setattr(log_module.os, "fsync", spy)
    data_dir = tmp_path / "store"
    with EventLog(data_dir, durability="always"):
        pass
    assert data_dir.stat().st_ino in dirs


# --- reopen -----------------------------------------------------------------------------


def test_reopen_continues_seq_chain_and_writer(tmp_path: Path) -> None:
    with EventLog(tmp_path, segment_bytes=SMALL) as log:
        fill(log, 20)
        writer = log.writer
        last = log.last_seq
    for round_ in range(3):
        with EventLog(tmp_path, segment_bytes=SMALL) as log:
            assert log.last_seq == last and log.writer == writer
            (env,) = log.append([entry(1000 + round_)])
            assert env.seq == last + 1
            last = env.seq
            assert log.verify().last_seq == last
    lines = raw_lines(tmp_path)
    assert_dense([ln.env["seq"] for ln in lines])
    ts = [ln.env["ts"] for ln in lines]
    assert all(a < b for a, b in zip(ts, ts[1:], strict=False)), "HLC time must grow along a writer's log"


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="durability"):
        EventLog(tmp_path / "a", durability="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="segment_bytes"):
        EventLog(tmp_path / "b", segment_bytes=10)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ConfigurationError, match="does not exist"):
        EventLog(tmp_path / "missing", create=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigurationError, match="no event log"):
        EventLog(tmp_path / "empty", create=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError):
        EventLog(tmp_path / "file")
    with pytest.raises(ConfigurationError):
        EventLog(tmp_path / "file" / "below")


def test_closed_log_refuses_use(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.close()
    log.close()  # idempotent
    with pytest.raises(LogClosedError):
        log.append([entry(1)])
    with pytest.raises(LogClosedError):
        log.flush()
    with pytest.raises(LogClosedError):
        log.refresh()


# --- several handles, threads and processes ---------------------------------------------


@pytest.mark.parametrize("sizes", [(SMALL, SMALL), (SMALL, 64 * SMALL), (64 * SMALL, SMALL)])
def test_two_handles_interleave_across_segment_rolls(tmp_path: Path, sizes: tuple[int, int]) -> None:
    """Whoever rolls a segment, the other handle must find the new one and continue its chain.

    Handles may be configured with different segment sizes (two programs, two configs).
    """
    rng = seeded("interleave")
    a = EventLog(tmp_path, segment_bytes=sizes[0], durability="none")
    b = EventLog(tmp_path, segment_bytes=sizes[1], durability="none")
    seen: list[int] = []
    try:
        for i in range(120):
            who = a if rng.random() < 0.5 else b
            n = rng.randint(1, 4)
            envs = who.append([entry(i * 10 + k, pad=rng.randint(0, 120)) for k in range(n)])
            assert [e.seq for e in envs] == list(range(envs[0].seq, envs[0].seq + n))
            seen.extend(e.seq for e in envs)
        assert a.refresh() == b.refresh() == seen[-1]
        assert seen == list(range(2, seen[-1] + 1))
        assert a.verify().last_seq == b.last_seq
    finally:
        a.close()
        b.close()
    assert_dense(log_seqs(tmp_path))
    with EventLog(tmp_path) as log:
        assert log.verify().events == len(log_seqs(tmp_path))


def test_refresh_takes_in_other_handles_appends(tmp_path: Path) -> None:
    with EventLog(tmp_path) as a, EventLog(tmp_path) as b:
        fill(a, 3)
        assert b.last_seq == 1  # not yet looked
        assert b.refresh() == 4
        assert [e.id for e in b.read(2)] == ["r0", "r1", "r2"]


def test_concurrent_readers(tmp_path: Path) -> None:
    """Readers share position hints; many at once must not trip over each other."""
    with EventLog(tmp_path, durability="none", segment_bytes=4 * SMALL) as log:
        fill(log, 3000, pad=0)
        last = log.last_seq
        errors: list[BaseException] = []
        rng = seeded("readers")
        starts = [[rng.randrange(1, last) for _ in range(2000)] for _t in range(6)]

        def reader(mine: list[int]) -> None:
            try:
                for s in mine:
                    got = [e.seq for e in log.read(s, s + 1)]
                    if got != [s, s + 1]:
                        raise AssertionError(f"read({s}, {s + 1}) gave {got}")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            threads = [threading.Thread(target=reader, args=(m,)) for m in starts]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            sys.setswitchinterval(old)
        assert errors == []


def test_errors_are_fabric_errors(tmp_path: Path) -> None:
    with pytest.raises(FabricError):
        EventLog(tmp_path / "x", durability="fast")  # type: ignore[arg-type]


def test_read_only_open_changes_nothing_and_refuses_writes(tmp_path: Path) -> None:
    with EventLog(tmp_path, durability="none") as writer:
        writer.append([("stored", "a", b'{"content":"x"}')])
    segment = tmp_path / segment_name(1)
    with open(segment, "ab") as f:
        f.write(b'{"v":1,"seq":3')  # a torn last line, as a crash leaves it
    before = segment.read_bytes()
    with EventLog(tmp_path, read_only=True) as reader:
        assert reader.last_seq == 2
        assert [r.reason for r in reader.recovered] == ["torn last line (left in place: opened read-only)"]
        assert reader.verify().events == 2
        with pytest.raises(ReadOnlyError):
            reader.append([("stored", "b", b"{}")])
        with pytest.raises(ReadOnlyError):
            reader.seal_segment()
    assert segment.read_bytes() == before  # not even the torn tail was cut
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ConfigurationError):
        EventLog(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()


def test_audit_verify_does_not_repair_what_it_inspects(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415

    with EventLog(tmp_path, durability="none") as writer:
        writer.append([("stored", "a", b'{"content":"x"}')])
    segment = tmp_path / segment_name(1)
    with open(segment, "ab") as f:
        f.write(b'{"v":1,"se')
    before = segment.read_bytes()
    done = subprocess.run([sys.executable, "-m", "fabric.cli", "audit", "verify", "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert segment.read_bytes() == before
