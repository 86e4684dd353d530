"""fabric.follow: a follower sees every event exactly once, in order, while another process writes.

The writer is a real subprocess appending in bursts of random size across many segment
rolls (tiny segments), so notifications are coalesced, new segments appear mid-read, and
batches land while the follower is reading. Whatever happens, the follower must see seqs
1..N with no gap and no repeat.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import child_env, segment_files

from fabric.errors import CorruptLogError
from fabric.events import Stored, encode_payload
from fabric.follow import follow
from fabric.log import EventLog

WRITER = r"""
import random, sys, time
from fabric.events import Stored, encode_payload
from fabric.log import EventLog

path, total, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(seed)
log = EventLog(path, segment_bytes=4096, durability="none")
done = 0
while done < total:
    n = min(total - done, rnd.choice([1, 1, 2, 5, 17, 40, 60]))
    log.append([("stored", f"r{done + i}",
                 encode_payload(Stored(content=f"event {done + i} " + "x" * rnd.randint(0, 80)))) for i in range(n)])
    done += n
    time.sleep(rnd.uniform(0, 0.02))  # bursts: the follower catches up and waits many times
log.close()
print("wrote", done, flush=True)
"""


def _new_log(path: Path, segment_bytes: int = 4096) -> None:
    EventLog(path, segment_bytes=segment_bytes).close()  # genesis only: seq 1


def _follow_in_thread(log: EventLog, want_last: int, *, notify: bool, limit: float = 40.0
                      ) -> tuple[threading.Thread, list[int], list[int]]:
    """Follow until seq ``want_last`` arrives (or ``limit`` seconds pass: then the test fails).

    Returns the thread, the seqs seen, and a one-item list counting how often it caught up.
    """
    stop = threading.Event()
    seen: list[int] = []
    idle = [0]

    def run() -> None:
        timer = threading.Timer(limit, stop.set)
        timer.start()
        try:
            for env in follow(log, 1, stop, poll=0.2, notify=notify, on_idle=lambda: idle.__setitem__(0, idle[0] + 1)):
                seen.append(env.seq)
                if env.seq >= want_last:
                    break
        finally:
            timer.cancel()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, seen, idle


@pytest.mark.parametrize("notify", [True, False], ids=["notifications", "polling-only"])
def test_follower_sees_every_event_once_across_segment_rolls(tmp_path: Path, notify: bool) -> None:
    total = 2000
    d = tmp_path / "store"
    _new_log(d)
    seed = int(time.time())
    print(f"writer seed={seed}")
    with EventLog(d, create=False) as log:
        thread, seen, idle = _follow_in_thread(log, total + 1, notify=notify)  # following before any write
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(d), str(total), str(seed)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
        try:
            _out, err = writer.communicate(timeout=60)
        finally:
            thread.join(timeout=60)
    assert writer.returncode == 0, err
    fault = next((i for i, s in enumerate(seen, 1) if s != i), None)
    assert seen == list(range(1, total + 2)), f"first fault near seq {fault}"
    assert idle[0] > 2  # it caught up and waited many times while the writer went on
    assert len(segment_files(d)) > 5  # the follower really crossed segment rolls


def test_follow_starts_where_asked_and_then_waits(tmp_path: Path) -> None:
    d = tmp_path / "store"
    with EventLog(d) as log:
        log.append([("stored", f"r{i}", encode_payload(Stored(content=str(i)))) for i in range(9)])
    with EventLog(d, create=False) as reader, EventLog(d) as writer:
        stop = threading.Event()
        got: list[int] = []

        def run() -> None:
            for env in follow(reader, 8, stop, poll=0.1):
                got.append(env.seq)

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [8, 9, 10]  # history from seq 8 on
        writer.append([("stored", "late", encode_payload(Stored(content="late")))])
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        stop.set()
        t.join(timeout=10)
        assert not t.is_alive()  # the stop event ends it while idle
    assert got == [8, 9, 10, 11]


def test_follow_reports_damage_instead_of_skipping_it(tmp_path: Path) -> None:
    d = tmp_path / "store"
    with EventLog(d, segment_bytes=1024) as log:
        for i in range(40):
            log.append([("stored", f"r{i}", encode_payload(Stored(content="y" * 50)))])
    first = segment_files(d)[0]
    data = bytearray(first.read_bytes())
    cut = data.index(b"\n", len(data) // 2) + 1
    data[cut:cut + 1] = b"#"  # a sealed segment, not the tail: damage, not a torn write
    first.write_bytes(bytes(data))
    with EventLog(d, create=False) as log, pytest.raises(CorruptLogError) as info:
        for _ in follow(log, 1, threading.Event(), poll=0.05):
            pass
    assert info.value.segment == first.name and info.value.offset == cut
