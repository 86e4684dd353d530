"""Choosing and running the codec of a store: plaintext, or encrypted with the store's key.

The store's first event (`StoreCreated`) says whether it is encrypted, and the key given
on open must agree: a key for a plaintext store is an `UnexpectedKeyError`, none for an
encrypted one a `MissingKeyError`, another one a `WrongKeyError` (all raised on open).
`StoreOpener` derives the key once per open: for a new store in the genesis factory the
log calls only when it creates the log, for an existing one from the newest `KeyParams`
in the log (the genesis event's, or the last `KeyRotated`'s).

Encrypted events (`EncryptedCodec`). Each record has its own random data key (DEK). Its
`Stored` event carries the DEK wrapped by the current store key (``dek``, with ``kid``)
and the record's content, metadata, tags and embedding sealed under the DEK
(``sealed``); every other field stays plaintext (see `fabric.crypto`). An `Updated`
event that changes any of those four fields is sealed with the same DEK and carries the
same wrapped DEK, so every sealed event decodes on its own: no lookup on the read path,
and a compaction can rewrap every copy. Writing an update needs the record's DEK: from
an id -> DEK cache that encoding and decoding fill, else from the record's newest
`Stored` event, found through `StoredIndex` (built from the log on first need, then
extended incrementally; lines are read at a remembered, validated position).

Redacted lines (`fabric.forget`) decode, in both codecs, to "this record is gone".
Ciphertext is never returned as content: an event that should be sealed and is not is
a `TamperedDataError`, as is one that fails authentication.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

from fabric import crypto
from fabric.crypto import KeyParams, Keyring
from fabric.errors import (
    CorruptLogError,
    CryptoError,
    RecordNotFoundError,
    TamperedDataError,
    WrongKeyError,
)
from fabric.events import (
    STORE_ID,
    Embedding,
    Event,
    Forgotten,
    KeyRotated,
    StoreCreated,
    Stored,
    Updated,
    decode_payload,
    encode_payload,
)
from fabric.forget import find_lines, is_redacted, redacted_change, type_needle
from fabric.log import Envelope, EventLog, segment_name
from fabric.state import Change

#: Most record DEKs an encrypted codec keeps in memory; beyond, the oldest half is dropped.
DEK_CACHE_SIZE: Final = 1 << 16
#: The event type bound into the AAD of S3 record objects (never a log event type).
RECORD_OBJECT: Final = "record_object"

_STORED: Final = Stored.TYPE
_UPDATED: Final = Updated.TYPE
_FORGOTTEN: Final = Forgotten.TYPE
_UNSET: Final = msgspec.UNSET
_NO_META: Final = Stored().metadata  # the default object itself, so omit_defaults leaves it out
_HINT: Final = "run `fabric audit verify` to check the log"


class _Fields(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The sealed part of a Stored/Updated event (one JSON object, fields as in the event)."""

    content: str | msgspec.UnsetType = msgspec.UNSET
    metadata: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    tags: list[str] | msgspec.UnsetType = msgspec.UNSET
    embedding: Embedding | None | msgspec.UnsetType = msgspec.UNSET


assert set(_Fields.__struct_fields__) == crypto.SEALED_FIELDS
_FIELDS_ENCODER: Final = msgspec.json.Encoder()
_FIELDS_DECODER: Final = msgspec.json.Decoder(_Fields)
_ENVELOPE_DECODER: Final = msgspec.json.Decoder(Envelope)


class _RecordObject(msgspec.Struct, kw_only=True, frozen=True):
    """An S3 record object: the record's DEK wrapped by the store key, and the sealed body."""

    v: int = 1
    kid: str
    dek: bytes
    sealed: bytes


_OBJECT_ENCODER: Final = msgspec.json.Encoder()
_OBJECT_DECODER: Final = msgspec.json.Decoder(_RecordObject)


# --- finding a record's Stored event ----------------------------------------------------------


class StoredIndex:
    """Record id -> position of its newest `Stored` event (and seq of its newest `Forgotten`).

    Built from the log on first use (envelopes only, no payload decoding), then extended
    by what was appended since, so no write scans the whole log twice. Positions may go
    stale when a compaction rewrites a segment; each read checks the seq it finds there
    and falls back to a search by seq. Memory: one small tuple per record id.
    """

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._upto = 0
        self._stored: dict[str, tuple[int, int, int]] = {}
        self._forgotten: dict[str, int] = {}

    def refresh(self) -> None:
        with self._lock:
            stored, forgotten = self._stored, self._forgotten
            for env, seg, off in self._log.read_located(self._upto + 1):
                if env.type == _STORED:
                    stored[env.id] = (env.seq, seg, off)
                elif env.type == _FORGOTTEN:
                    forgotten[env.id] = env.seq
                self._upto = env.seq

    def forgotten_seq(self, record_id: str) -> int:
        """Seq of the record's newest `Forgotten` event (0: never forgotten)."""
        self.refresh()
        return self._forgotten.get(record_id, 0)

    def stored_seq(self, record_id: str) -> int:
        """Seq of the record's newest `Stored` event (0: never stored)."""
        self.refresh()
        pos = self._stored.get(record_id)
        return 0 if pos is None else pos[0]

    def newest_stored(self, record_id: str) -> Envelope | None:
        """The record's newest `Stored` line, or None if it was never stored."""
        self.refresh()
        pos = self._stored.get(record_id)
        if pos is None:
            return None
        seq, seg, off = pos
        env = self._read_at(seq, seg, off)
        if env is not None:
            return env
        for env, seg, off in self._log.read_located(seq, seq):  # moved by a rewrite
            with self._lock:
                if self._stored.get(record_id, (0,))[0] == seq:
                    self._stored[record_id] = (seq, seg, off)
            return env
        return None

    def _read_at(self, seq: int, seg: int, off: int) -> Envelope | None:
        try:
            with open(self._log.segment_path(seg), "rb") as f:
                f.seek(off)
                line = f.readline()
            env = _ENVELOPE_DECODER.decode(line)
        except (OSError, msgspec.DecodeError, UnicodeDecodeError):
            return None
        return env if env.seq == seq else None


# --- the codecs ---------------------------------------------------------------------------------


class StoreCodec:
    """What `MemoryFabric` needs from a codec beyond `fabric.codec.Codec`: hooks around appends,
    the record index, and sealing of S3 record objects (identity when not encrypted)."""

    encrypted: bool = False

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self.index = StoredIndex(log)

    @property
    def keyring(self) -> Keyring | None:
        return None

    def encode(self, record_id: str, event: Event) -> bytes:
        return encode_payload(event)

    def decode(self, env: Envelope) -> Change:
        if env.dd is not None and is_redacted(env):
            return redacted_change(env)
        event = decode_payload(env.type, env.data)
        cls = type(event)
        if (cls is Stored or cls is Updated) and event.sealed is not None:  # type: ignore[attr-defined]
            raise TamperedDataError(f"the {env.type!r} event of record {env.id!r} (seq {env.seq}) is "
                                    "encrypted, but this store was created without encryption", hint=_HINT)
        return Change(env.id, env.seq, env.ts, event)

    def append_guard(self) -> Callable[[], None] | None:
        """A check to run under the log's lock before an append (None: nothing to check)."""
        return None

    def appended(self, envs: Sequence[Envelope]) -> None:
        """Called after a successful append of ``envs``."""

    def drop_record(self, record_id: str) -> None:
        """Forget whatever key material of the record is cached (a forget)."""

    def seal_record_object(self, record_id: str, payload: bytes) -> bytes:
        """``payload`` (an S3 record object's bytes) as it may leave the machine: as is here."""
        return payload

    def open_record_object(self, record_id: str, blob: bytes) -> bytes:
        return blob


class PlainStoreCodec(StoreCodec):
    """The codec of a store created without encryption."""


class EncryptedCodec(StoreCodec):
    """Seals record fields under per-record DEKs, wrapped by the keyring's current store key."""

    encrypted = True

    def __init__(self, log: EventLog, keyring: Keyring, *, seen_upto: int = 0,
                 cache_size: int = DEK_CACHE_SIZE) -> None:
        super().__init__(log)
        self._ring = keyring
        self._deks: dict[str, tuple[bytes, bytes]] = {}  # record id -> (wrapped DEK, DEK)
        self._cache_size = cache_size
        self._seen = seen_upto  # log seq up to which no unknown key rotation exists
        self._rotating: str | None = None  # key id of a rotation this codec is appending

    @property
    def keyring(self) -> Keyring:
        return self._ring

    def _remember(self, record_id: str, wrapped: bytes, dek: bytes) -> None:
        deks = self._deks
        deks[record_id] = (wrapped, dek)
        if len(deks) > self._cache_size:
            for rid in list(deks)[: len(deks) // 2]:
                deks.pop(rid, None)

    def drop_record(self, record_id: str) -> None:
        self._deks.pop(record_id, None)

    # --- writing ---

    def encode(self, record_id: str, event: Event) -> bytes:
        cls = type(event)
        if cls is Stored:
            return self._encode_stored(record_id, event)  # type: ignore[arg-type]
        if cls is Updated:
            return self._encode_updated(record_id, event)  # type: ignore[arg-type]
        if cls is Forgotten:
            self._deks.pop(record_id, None)
        return encode_payload(event)

    def _encode_stored(self, rid: str, ev: Stored) -> bytes:
        key = self._ring.current
        kid = key.key_id
        dek = crypto.new_data_key()
        fields = _Fields(content=ev.content, metadata=ev.metadata, tags=ev.tags,
                         embedding=_UNSET if ev.embedding is None else ev.embedding)
        sealed = crypto.seal(dek, _FIELDS_ENCODER.encode(fields), record_id=rid, event_type=_STORED, key_id=kid)
        wrapped = crypto.wrap_data_key(key, rid, dek)
        # cached before the append is known to succeed: a refused store leaves a DEK that
        # still decrypts whatever it seals (updates carry their wrapped DEK), so it is harmless
        self._remember(rid, wrapped, dek)
        return encode_payload(msgspec.structs.replace(
            ev, content="", metadata=_NO_META, tags=[], embedding=None, sealed=sealed, dek=wrapped, kid=kid))

    def _encode_updated(self, rid: str, ev: Updated) -> bytes:
        fields = _Fields(content=ev.content, metadata=ev.metadata, tags=ev.tags, embedding=ev.embedding)
        if (fields.content is _UNSET and fields.metadata is _UNSET and fields.tags is _UNSET
                and fields.embedding is _UNSET):
            return encode_payload(ev)  # only memory_type / storage_tier: nothing to seal
        wrapped, dek = self._dek_for_write(rid)
        kid = self._ring.current_key_id
        if crypto.wrapped_key_id(wrapped) != kid:  # wrapped before a rotation: new lines use the new key
            wrapped = crypto.wrap_data_key(self._ring.current, rid, dek)
            self._remember(rid, wrapped, dek)
        sealed = crypto.seal(dek, _FIELDS_ENCODER.encode(fields), record_id=rid, event_type=_UPDATED, key_id=kid)
        return encode_payload(msgspec.structs.replace(
            ev, content=_UNSET, metadata=_UNSET, tags=_UNSET, embedding=_UNSET, sealed=sealed, kid=kid, dek=wrapped))

    def _dek_for_write(self, rid: str) -> tuple[bytes, bytes]:
        """(wrapped, DEK) of the record's live incarnation: cached, else from its newest Stored."""
        hit = self._deks.get(rid)
        if hit is not None:
            return hit
        env = self.index.newest_stored(rid)
        if env is None or is_redacted(env) or self.index.forgotten_seq(rid) > env.seq:
            raise RecordNotFoundError(rid)
        stored = decode_payload(_STORED, env.data)
        assert isinstance(stored, Stored)
        if stored.dek is None:
            raise TamperedDataError(f"the stored event of record {rid!r} (seq {env.seq}) carries no data key",
                                    hint=_HINT)
        dek = crypto.unwrap_data_key(self._ring, rid, stored.dek)
        self._remember(rid, stored.dek, dek)
        return stored.dek, dek

    # --- reading ---

    def decode(self, env: Envelope) -> Change:
        if env.dd is not None and is_redacted(env):
            return redacted_change(env)
        t = env.type
        event = decode_payload(t, env.data)
        if t == _STORED or t == _UPDATED:
            event = self._open(env, event)
        elif t == _FORGOTTEN:
            self._deks.pop(env.id, None)
        return Change(env.id, env.seq, env.ts, event)

    def _open(self, env: Envelope, ev: Event) -> Event:
        rid = env.id
        assert isinstance(ev, (Stored, Updated))
        if ev.sealed is None:
            if isinstance(ev, Stored) or not (ev.content is _UNSET and ev.metadata is _UNSET
                                              and ev.tags is _UNSET and ev.embedding is _UNSET):
                raise TamperedDataError(f"the {env.type!r} event of record {rid!r} (seq {env.seq}) holds "
                                        "plaintext fields in an encrypted store", hint=_HINT)
            return ev
        if ev.dek is None or ev.kid is None:
            raise TamperedDataError(f"the {env.type!r} event of record {rid!r} (seq {env.seq}) is sealed "
                                    "but carries no wrapped data key or key id", hint=_HINT)
        hit = self._deks.get(rid)
        if hit is not None and hit[0] == ev.dek:
            dek = hit[1]
        else:
            dek = crypto.unwrap_data_key(self._ring, rid, ev.dek)
            if isinstance(ev, Stored):  # an update's copy may be stale (a race): never cache it
                self._remember(rid, ev.dek, dek)
        plain = crypto.open_sealed(dek, ev.sealed, record_id=rid, event_type=env.type, key_id=ev.kid)
        try:
            f = _FIELDS_DECODER.decode(plain)
        except (msgspec.DecodeError, UnicodeDecodeError) as e:  # authentic but unreadable: a newer writer?
            raise CryptoError(f"the {env.type!r} event of record {rid!r} (seq {env.seq}) decrypts to "
                              f"unreadable fields: {e}") from e
        if isinstance(ev, Stored):
            return msgspec.structs.replace(
                ev, content="" if f.content is _UNSET else f.content,
                metadata=_NO_META if f.metadata is _UNSET else f.metadata,
                tags=[] if f.tags is _UNSET else f.tags,
                embedding=None if f.embedding is _UNSET else f.embedding,
                sealed=None, dek=None, kid=None)
        return msgspec.structs.replace(ev, content=f.content, metadata=f.metadata, tags=f.tags,
                                       embedding=f.embedding, sealed=None, dek=None, kid=None)

    # --- key rotation ---

    def append_guard(self) -> Callable[[], None]:
        return self._check_key_current

    def _check_key_current(self) -> None:
        """Under the log's lock: refuse to write with a key another process rotated away from."""
        if self._log.last_seq <= self._seen:
            return
        for env in self._log.read(self._seen + 1):
            if env.type == KeyRotated.TYPE and not is_redacted(env):
                rotated = decode_payload(KeyRotated.TYPE, env.data)
                assert isinstance(rotated, KeyRotated)
                kid = crypto.load_key_params(rotated.encryption).key_id
                if kid != self._ring.current_key_id and kid != self._rotating:
                    raise WrongKeyError(
                        f"the store's key was rotated to key id {kid} (seq {env.seq}) after this store was "
                        f"opened with key id {self._ring.current_key_id}; nothing was written",
                        hint="reopen the store with the new passphrase")
            self._seen = env.seq

    def appended(self, envs: Sequence[Envelope]) -> None:
        if envs and envs[0].seq == self._seen + 1:
            self._seen = envs[-1].seq

    def rotate(self, new_passphrase: str) -> KeyParams:
        """Append a `KeyRotated`: a new store key (new salt) wraps new DEKs from now on, and every
        key this keyring holds is escrowed under it, so the new passphrase alone reads everything."""
        params, new_key = crypto.new_key_params(new_passphrase)
        escrow = Keyring(*(self._ring.get(k) for k in self._ring.key_ids))
        escrow.add(new_key)
        blobs = [escrow.export_key(k) for k in self._ring.key_ids if k != new_key.key_id]
        payload = encode_payload(KeyRotated(encryption=params, wrapped_keys=blobs))
        self._rotating = params.key_id
        try:
            envs = self._log.append([(KeyRotated.TYPE, STORE_ID, payload)], check=self._check_key_current)
            self._ring.add(new_key)
        finally:
            self._rotating = None
        self.appended(envs)
        return params

    # --- S3 record objects ---

    def seal_record_object(self, record_id: str, payload: bytes) -> bytes:
        """``payload`` sealed under the record's DEK, with the DEK wrapped by the current store key."""
        _wrapped, dek = self._dek_for_write(record_id)
        return seal_record_object(self._ring, record_id, payload, dek)

    def open_record_object(self, record_id: str, blob: bytes) -> bytes:
        return open_record_object(self._ring, record_id, blob)


def seal_record_object(keyring: Keyring, record_id: str, payload: bytes, dek: bytes) -> bytes:
    """A self-contained encrypted object for S3: ``{"v", "kid", "dek", "sealed"}`` as JSON.

    The body is sealed under the record's own DEK (AAD: record id, ``record_object``, key
    id), the DEK wrapped by the keyring's current key, so a machine with the passphrase can
    rebuild from the bucket alone. Forgetting a record must delete its object: the object
    holds its own copy of the wrapped DEK.
    """
    key = keyring.current
    sealed = crypto.seal(dek, payload, record_id=record_id, event_type=RECORD_OBJECT, key_id=key.key_id)
    wrapped = crypto.wrap_data_key(key, record_id, dek)
    return _OBJECT_ENCODER.encode(_RecordObject(kid=key.key_id, dek=wrapped, sealed=sealed))


def open_record_object(keyring: Keyring, record_id: str, blob: bytes) -> bytes:
    """The payload `seal_record_object` sealed; `TamperedDataError` if it was changed or moved."""
    try:
        obj = _OBJECT_DECODER.decode(blob)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise TamperedDataError(f"the object of record {record_id!r} is not an encrypted record object: {e}",
                                hint="was it written by an unencrypted store?") from e
    if obj.v != 1:
        raise CryptoError(f"record object format {obj.v} of record {record_id!r} is not known to this version")
    dek = crypto.unwrap_data_key(keyring, record_id, obj.dek)
    return crypto.open_sealed(dek, obj.sealed, record_id=record_id, event_type=RECORD_OBJECT, key_id=obj.kid)


# --- opening a store ----------------------------------------------------------------------------


def key_history(log: EventLog) -> list[KeyRotated]:
    """Every `KeyRotated` event, in log order (a byte search: cheap even for a large log)."""
    out: list[KeyRotated] = []
    for env in find_lines(log, type_needle(KeyRotated.TYPE)):
        if env.type == KeyRotated.TYPE and env.id == STORE_ID and not is_redacted(env):
            rotated = decode_payload(KeyRotated.TYPE, env.data)
            assert isinstance(rotated, KeyRotated)
            out.append(rotated)
    return out


class StoreOpener:
    """Opens a store with a passphrase (or none), deriving its key exactly once.

    Pass `genesis` to `EventLog` as its genesis factory, then call `open` with the log.
    The passphrase is dropped after `open`.
    """

    def __init__(self, passphrase: str | None) -> None:
        self._passphrase = passphrase or None
        self._created: Keyring | None = None

    def genesis(self) -> StoreCreated:
        log_id = uuid.uuid4().hex[:16]
        if self._passphrase is None:
            return StoreCreated(log_id=log_id)
        ring, params = Keyring.create(self._passphrase)
        self._created = ring
        return StoreCreated(log_id=log_id, encryption=params)

    def open(self, log: EventLog) -> StoreCodec:
        try:
            return self._open(log)
        finally:
            self._passphrase = None
            self._created = None

    def _open(self, log: EventLog) -> StoreCodec:
        seen = log.last_seq
        first = next(iter(log.read(1, 1)), None)
        if first is None or first.type != StoreCreated.TYPE:
            raise CorruptLogError("the log does not start with a store_created event", segment=segment_name(1),
                                  offset=0)
        created = decode_payload(StoreCreated.TYPE, first.data)
        assert isinstance(created, StoreCreated)
        if created.encryption is None:
            crypto.check_key(None, self._passphrase)  # UnexpectedKeyError if a key was given
            return PlainStoreCodec(log)
        history = key_history(log)
        newest = crypto.load_key_params(history[-1].encryption if history else created.encryption)
        made = self._created
        if made is not None and made.current_key_id == newest.key_id:
            ring = made  # this open created the store: derived already
        else:
            checked = crypto.check_key(newest, self._passphrase)  # MissingKeyError / WrongKeyError
            assert checked is not None
            ring = checked
        retired = {kid for rotated in history for kid in rotated.retired}
        for rotated in reversed(history):  # newest escrow first: it may unlock the older ones
            for blob in rotated.wrapped_keys:
                wrapping, kid = crypto.escrowed_key_ids(blob)
                if kid not in ring and kid not in retired and wrapping in ring:
                    ring.import_key(blob)
        return EncryptedCodec(log, ring, seen_upto=seen)


def genesis_for(key: str | None) -> StoreCreated:
    """The first event of a new store opened with ``key`` (derives a key: prefer `StoreOpener`)."""
    return StoreOpener(key).genesis()


def make_codec(log: EventLog, key: str | None) -> StoreCodec:
    """The codec for an existing log opened with ``key`` (raises the key errors named above)."""
    return StoreOpener(key).open(log)


__all__ = ["DEK_CACHE_SIZE", "EncryptedCodec", "PlainStoreCodec", "RECORD_OBJECT", "StoreCodec", "StoreOpener",
           "StoredIndex", "genesis_for", "key_history", "make_codec", "open_record_object", "seal_record_object"]
