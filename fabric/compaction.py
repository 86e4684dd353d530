"""Compaction: rewriting sealed log segments so that the log keeps only what it must.

One pass over the sealed segments (the active one is sealed first), each segment
rewritten at most once, under the log's lock (`EventLog.rewrite_sealed_segment`: temp,
fsync, rename; the chain still verifies through ``dd``):

- **Redaction.** Every line of a forgotten record that precedes its `Forgotten` event
  loses its payload (`fabric.forget`). `MemoryFabric.forget` does this at once; compaction
  finishes a forget a crash interrupted.
- **Re-encryption** (``reencrypt=True``, encrypted stores). Every wrapped data key
  (``dek`` of `Stored` and `Updated` lines) not wrapped by the current store key is
  rewrapped by it. The sealed payloads do not change: a DEK stays the same, only its
  wrapping does, and the rewrite replaces exactly those bytes of the line. Then the
  escrowed older keys are removed from the `KeyRotated` lines, and a `KeyRotated` marker
  (same key, ``retired=[...]``) records which key ids were retired: no old passphrase or
  old key opens anything in the log any more. Copies of the log made before (shipped
  segments, backups) keep the old wrapping; retire them with the key.

A crash at any point leaves a readable log: rewraps are done everywhere before any
escrow is removed, and the marker comes last.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import msgspec

from fabric import crypto
from fabric.crypto_codec import EncryptedCodec, StoreCodec
from fabric.errors import ConfigurationError, CorruptLogError
from fabric.events import STORE_ID, Forgotten, KeyRotated, Stored, Updated, decode_payload, encode_payload
from fabric.forget import REDACTED, forgotten_ids, is_redacted, type_needle
from fabric.log import Envelope, EventLog

_SEALED_TYPES = frozenset({Stored.TYPE, Updated.TYPE})


@dataclass
class CompactionReport:
    """What a compaction did (or, with ``dry_run``, would do)."""

    dry_run: bool
    segments_rewritten: int = 0
    lines_redacted: int = 0
    keys_rewrapped: int = 0
    escrows_removed: int = 0
    retired_keys: list[str] = field(default_factory=list)
    current_key: str | None = None


def _b64(blob: bytes) -> bytes:
    return base64.b64encode(blob)  # msgspec writes bytes as standard, padded base64


def compact(log: EventLog, codec: StoreCodec, *, reencrypt: bool = False, dry_run: bool = False) -> CompactionReport:
    """Redact forgotten records and (``reencrypt``) rewrap every data key; see the module docstring.

    ``reencrypt`` on a store without encryption is a `ConfigurationError`; a keyring whose
    current key is not the store's newest (another process rotated) a `WrongKeyError`.
    The active segment is sealed only when it holds something to rewrite, so a compaction
    with nothing to do appends nothing.
    """
    report = CompactionReport(dry_run=dry_run)
    ring = None
    if reencrypt:
        if not isinstance(codec, EncryptedCodec):
            raise ConfigurationError("--reencrypt needs an encrypted store; this one has no key")
        codec.append_guard()()  # raises if another process rotated to a key we lack
        ring = codec.keyring
        report.current_key = ring.current_key_id
    forgotten = forgotten_ids(log)
    current = ring.current_key_id if ring is not None else None

    def decide(env: Envelope) -> tuple[str, bytes] | None:
        """(what, new payload) for a line that must change; pure, so it can count and rewrite."""
        until = forgotten.get(env.id)
        if until is not None and env.seq < until and env.type != Forgotten.TYPE:
            return None if bytes(env.data) == REDACTED else ("redacted", REDACTED)
        if ring is None or env.type not in _SEALED_TYPES or is_redacted(env):
            return None
        wrapped = getattr(decode_payload(env.type, env.data), "dek", None)
        if wrapped is None or crypto.wrapped_key_id(wrapped) == current:
            return None
        data, old_b64 = bytes(env.data), _b64(wrapped)
        if data.count(old_b64) != 1:
            raise CorruptLogError(f"cannot find the wrapped data key of record {env.id!r} in its line",
                                  seq=env.seq)
        return "rewrapped", data.replace(old_b64, _b64(crypto.rewrap_data_key(ring, env.id, wrapped)))

    def tally(counts: dict[str, int]) -> None:
        report.lines_redacted += counts.get("redacted", 0)
        report.keys_rewrapped += counts.get("rewrapped", 0)

    if dry_run:
        counts: dict[str, int] = {}
        for env in log.read():
            if (change := decide(env)) is not None:
                counts[change[0]] = counts.get(change[0], 0) + 1
        tally(counts)
        if ring is not None:
            report.escrows_removed, report.retired_keys = _escrow(log, ring.current_key_id, dry_run=True)
        return report
    active = log.segments()[-1]
    if any(decide(env) is not None or _has_escrow(env, ring is not None) for env in log.read(active)):
        log.seal_segment()
    for first in log.segments()[:-1]:
        seen: dict[str, int] = {}

        def rewrite(env: Envelope, seen: dict[str, int] = seen) -> bytes | None:
            change = decide(env)
            if change is None:
                return None
            seen[change[0]] = seen.get(change[0], 0) + 1
            return change[1]

        if log.rewrite_sealed_segment(first, rewrite):
            report.segments_rewritten += 1
            tally(seen)
    if ring is not None:
        report.escrows_removed, report.retired_keys = _escrow(log, ring.current_key_id, dry_run=False)
        old = [k for k in ring.key_ids if k != ring.current_key_id]
        retired = sorted(set(report.retired_keys) | set(old))
        report.retired_keys = retired
        if retired:
            params = ring.current.params
            assert params is not None  # the current key is always derived from its params
            marker = encode_payload(KeyRotated(encryption=params, retired=retired))
            assert isinstance(codec, EncryptedCodec)
            envs = log.append([(KeyRotated.TYPE, STORE_ID, marker)], check=codec.append_guard())
            codec.appended(envs)
            for kid in old:
                ring.drop_key(kid)
    return report


def _has_escrow(env: Envelope, reencrypt: bool) -> bool:
    if not reencrypt or env.type != KeyRotated.TYPE:
        return False
    rotated = decode_payload(KeyRotated.TYPE, env.data)
    return bool(getattr(rotated, "wrapped_keys", None))


def _escrow(log: EventLog, current: str, *, dry_run: bool) -> tuple[int, list[str]]:
    """Remove escrowed keys from every sealed `KeyRotated` line; (blobs removed, their key ids)."""
    removed: list[str] = []

    def strip(env: Envelope) -> bytes | None:
        if env.type != KeyRotated.TYPE or env.id != STORE_ID:
            return None
        rotated = decode_payload(KeyRotated.TYPE, env.data)
        assert isinstance(rotated, KeyRotated)
        if not rotated.wrapped_keys:
            return None
        kids = [crypto.escrowed_key_ids(b)[1] for b in rotated.wrapped_keys]
        removed.extend(k for k in kids if k != current)
        return encode_payload(msgspec.structs.replace(rotated, wrapped_keys=[]))

    if dry_run:
        for env in log.read():
            strip(env)
    else:
        for first in log.segments()[:-1]:
            log.rewrite_sealed_segment(first, strip, match=type_needle(KeyRotated.TYPE))
    return len(removed), sorted(set(removed))


__all__ = ["CompactionReport", "compact"]
