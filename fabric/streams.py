"""Other writers' streams, restored as read-only replicas under ``data_dir/streams/<writer>/``.

A replica is a log like any other (segments, hash chain), written once by `fabric restore`
and never appended to. Its events are folded into the store's state together with the
store's own, in one order that does not depend on how the streams were read: the merge
key is `fabric.state.merge_order` (hybrid-logical time, writer, seq) followed by the
stream's name, which makes it total. Each replica is decoded with its own codec: an
encrypted replica has its own salt, so its key is derived from the same passphrase.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fabric.crypto_codec import StoreCodec, StoreOpener
from fabric.errors import UnexpectedKeyError
from fabric.log import EventLog
from fabric.s3_restore import replica_dirs
from fabric.state import Change, merge_order

MergeKey = tuple[int, str, int, str]
STORE_LEVEL: Final = ""  # events about a store itself carry no record id and are not folded


@dataclass(frozen=True)
class Replica:
    stream: str
    path: Path
    log_id: str
    last_seq: int
    encrypted: bool


def merge_key(ts: int, writer: str, seq: int, stream: str) -> MergeKey:
    return (*merge_order(ts, writer, seq), stream)


def open_codec(log: EventLog, passphrase: str | None) -> StoreCodec:
    """The codec of a replica: with the passphrase if it is encrypted, plaintext otherwise."""
    try:
        return StoreOpener(passphrase).open(log)
    except UnexpectedKeyError:  # a plaintext stream folded into an encrypted store
        return StoreOpener(None).open(log)


def load_replicas(data_dir: str | os.PathLike[str], passphrase: str | None) -> tuple[list[Replica],
                                                                                        list[tuple[MergeKey, Change]]]:
    """Every replica of ``data_dir`` and all their record events, decoded, in merge order."""
    replicas: list[Replica] = []
    changes: list[tuple[MergeKey, Change]] = []
    for stream, path in replica_dirs(data_dir):
        log = EventLog(path, create=False, durability="none")
        try:
            codec = open_codec(log, passphrase)
            log_id = ""
            for env in log.read(1):
                if env.seq == 1:
                    log_id = getattr(codec.decode(env).event, "log_id", "") or ""
                if env.id == STORE_LEVEL:
                    continue
                changes.append((merge_key(env.ts, env.writer, env.seq, stream), codec.decode(env)))
            replicas.append(Replica(stream, path, log_id, log.last_seq, codec.encrypted))
        finally:
            log.close()
    changes.sort(key=lambda item: item[0])
    return replicas, changes
