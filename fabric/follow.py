"""Follow a log as other processes append to it: the engine of ``fabric tail``, ``watch`` and ``replay --follow``.

File-change notifications (watchfiles: inotify, FSEvents, ...) only say *when* to look,
never *what* is new: they are coalesced, dropped when a queue overflows, and absent on
some file systems. So after every wake-up (a notification, or the fallback poll timeout
when there was none) the follower re-reads the log from the position after the last
event it handed out. Nothing is missed or repeated however notifications behave, a new
segment is found because `EventLog.read` lists segments on each call, and the lag is
bounded by the poll interval even if no notification ever comes.

Readers never see part of a batch (`EventLog.read` stops before an unfinished one), so a
follower sees each writer's batches whole, in log order.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any, Final

from fabric.log import Envelope, EventLog, parse_segment_name

log = logging.getLogger("fabric.follow")

#: Default wait between re-reads when no notification arrives (seconds): the worst-case lag.
DEFAULT_POLL: Final = 0.5
#: How long watchfiles keeps gathering changes before waking us (ms): part of the lag while writes stream.
_DEBOUNCE_MS: Final = 50
_STEP_MS: Final = 20


def _segment_changes(_change: Any, path: str) -> bool:
    """Only segment files matter (not the lock file, not fabric.db and its WAL)."""
    return parse_segment_name(os.path.basename(path)) is not None


def _watch_wakeups(path: str, stop: threading.Event, poll: float) -> Generator[None, None, None]:
    """One item per wake-up: a batch of file notifications, or ``poll`` seconds without one.

    Falls back to plain sleeping if the platform's watcher cannot start or fails (e.g. the
    inotify watch limit is reached): slower to react, never wrong.
    """
    try:
        import watchfiles  # noqa: PLC0415 - only followers need it
    except ImportError:
        yield from _poll_wakeups(stop, poll)
        return
    changes = watchfiles.watch(
        path, watch_filter=_segment_changes, debounce=_DEBOUNCE_MS, step=_STEP_MS, stop_event=stop,
        rust_timeout=max(1, int(poll * 1000)), yield_on_timeout=True, raise_interrupt=False, recursive=False)
    try:
        while not stop.is_set():
            try:
                next(changes)
            except StopIteration:
                return
            except (OSError, RuntimeError) as e:  # watcher unavailable: poll instead
                log.info("file notifications failed (%s); polling every %.2f s", e, poll)
                break
            yield None
    finally:
        changes.close()
    yield from _poll_wakeups(stop, poll)


def _poll_wakeups(stop: threading.Event, poll: float) -> Generator[None, None, None]:
    while not stop.wait(poll):
        yield None


def follow(event_log: EventLog, start: int = 1, stop: threading.Event | None = None, *,
           poll: float = DEFAULT_POLL, notify: bool = True,
           on_idle: Callable[[], None] | None = None) -> Iterator[Envelope]:
    """Yield every envelope with ``seq >= start`` in order, then keep yielding new ones as they land.

    Runs until ``stop`` is set (checked at least every ``poll`` seconds) or the consumer
    stops iterating (``break`` closes the watcher). ``notify=False`` only polls.
    ``on_idle`` is called after each re-read that caught up with the log (for live
    displays that refresh while nothing happens). Errors of the log (`CorruptLogError`)
    propagate: a follower never skips damage.
    """
    stop = stop if stop is not None else threading.Event()
    next_seq = max(start, 1)

    def drain() -> Iterator[Envelope]:
        nonlocal next_seq
        event_log.refresh()
        for env in event_log.read(next_seq):
            next_seq = env.seq + 1
            yield env
        if on_idle is not None:
            on_idle()

    yield from drain()
    wakeups = _watch_wakeups(str(event_log.path), stop, poll) if notify else _poll_wakeups(stop, poll)
    try:
        for _ in wakeups:
            if stop.is_set():
                return
            yield from drain()
    finally:
        wakeups.close()
