"""AES-256-GCM envelope encryption: store keys, per-record data keys, sealed payloads.

Scheme (every blob starts with a format version byte, 0x01)::

    passphrase --scrypt(salt, n, r, p), once per open--> master key (32 B)
    master --HMAC-SHA256(b"memory-fabric key id")[:8]--> key id (16 hex, public)
    master --HKDF-Expand(b"memory-fabric v1 wrap key")--> store key (wraps data keys)
    record --os.urandom(32)--> data key (DEK), one per record
    wrapped DEK = 01 | kid (8) | nonce (12) | GCM(store key, DEK; AAD: record id, kid, "dek")
    sealed      = 01 | nonce (12) | GCM(DEK, fields as JSON; AAD: record id, event type, kid)

AAD parts are length-prefixed, so ("ab", "c") and ("a", "bc") differ. Nonces are random
96-bit: each DEK seals a handful of events, and a store key should be rotated before
~2**32 wraps (NIST SP 800-38D's bound for random nonces), i.e. billions of records.

Threat model. Protected: confidentiality and integrity of a record's content, metadata,
tags and embedding in the log and wherever the log is copied (shipped S3 segments,
backups), against anyone who can read or change those bytes without the passphrase.
A blob that is changed, truncated, or moved to another record, event type or key id
raises `TamperedDataError`; it never decrypts to something else and is never returned
as text. Forgetting a record destroys its DEK (crypto-shredding) once every copy of the
wrapped DEK is gone: views drop it at once, `MemoryFabric.forget` rewrites the log's
copies away (`fabric.forget`), shipped segments and backups go when they are rewritten
or expire; until then the passphrase still recovers the record from them.

Not protected: record ids, event types, seq, timestamps, writer ids, memory_type,
storage_tier and access counts stay plaintext; sizes leak (ciphertext = plaintext + 29
bytes, no padding), as does which events touch the same record. AAD does not bind seq,
so an older sealed blob of the same record and event type can be replayed, and whole
events can be dropped or reordered: detecting that is the hash chain's job, and an
unkeyed chain stops accidents, not an attacker who recomputes it. Views that hold
plaintext (the in-memory view, an SQLite FTS index) are outside this module; S3 record
objects are sealed with their record's DEK (`fabric.crypto_codec.seal_record_object`). Keys live
in Python ``bytes`` and OpenSSL contexts, which cannot be wiped; this module keeps no
passphrase, but the caller's string (or ``IOA_FABRIC_KEY`` in the environment) may.
The key id lets anyone holding the log test passphrase guesses offline, as any
ciphertext would: scrypt's cost per guess is the defence, so a weak passphrase is weak.

``cryptography`` is imported on first use (opening an unencrypted store never pays for
it), and none of its exceptions leave this module: they become `CryptoError`s.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import threading
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import msgspec

from fabric.errors import (
    CryptoError,
    InvalidInputError,
    MissingKeyError,
    TamperedDataError,
    UnexpectedKeyError,
    WrongKeyError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: scrypt cost for new keys: OWASP's minimum for scrypt (N=2**17, r=8, p=1): 128 MiB and
#: ~0.3 s once per open on a 2-core box. Read at call time, so tests may lower them; the
#: values used are stored in `KeyParams`, so raising them later breaks no store.
SCRYPT_N: int = 2**17
SCRYPT_R: int = 8
SCRYPT_P: int = 1
#: Limits on parameters read from a store, so a hostile log cannot make open eat 100 GB.
MAX_SCRYPT_MEMORY: Final = 1 << 30
MAX_SCRYPT_WORK: Final = 1 << 24  # n * r * p: 16x the default

#: The fields `seal_payload` puts into the one sealed blob; everything else stays plaintext.
SEALED_FIELDS: Final = frozenset({"content", "metadata", "tags", "embedding"})

VERSION: Final = 1
_V: Final = bytes([VERSION])
SALT_BYTES: Final = 16
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
KID_BYTES: Final = 8
_SEAL_MIN: Final = 1 + NONCE_BYTES + TAG_BYTES
_WRAPPED_LEN: Final = 1 + KID_BYTES + NONCE_BYTES + KEY_BYTES + TAG_BYTES
_ESCROW_LEN: Final = _WRAPPED_LEN + KID_BYTES
_HEX: Final = frozenset("0123456789abcdef")
_KID_LABEL: Final = b"memory-fabric key id"
_WRAP_LABEL: Final = b"memory-fabric v1 wrap key\x01"  # HKDF-Expand, one block
_VERIFY_HINT: Final = "run `fabric audit verify` to check the log"


def _lp(part: bytes) -> bytes:
    return len(part).to_bytes(4, "big") + part


def _lps(part: str) -> bytes:
    return _lp(part.encode("utf-8", "surrogatepass"))  # total: any str has one encoding


@functools.lru_cache(maxsize=256)
def _lp_cached(part: bytes) -> bytes:
    """`_lp` of the few values that repeat on every call (key ids), computed once."""
    return _lp(part)


@functools.lru_cache(maxsize=256)
def _seal_aad_tail(event_type: str, key_id: str) -> bytes:
    return _lps(event_type) + _lps(key_id)


_AAD_SEAL: Final = _lp(b"memory-fabric") + _lp(_V) + _lp(b"seal")
_AAD_DEK: Final = _lp(b"memory-fabric") + _lp(_V) + _lp(b"dek")
_AAD_ESCROW: Final = _lp(b"memory-fabric") + _lp(_V) + _lp(b"store-key")

class _NotLoaded(Exception):
    """Stands in for cryptography's InvalidTag until it is imported; never raised."""


_AESGCM: type[AESGCM] | None = None
_INVALID_TAG: type[Exception] = _NotLoaded


def _load() -> type[AESGCM]:
    """Import ``cryptography`` on first use (its import costs ~25 ms)."""
    global _AESGCM, _INVALID_TAG
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _INVALID_TAG, _AESGCM = InvalidTag, AESGCM
    return AESGCM


def _aesgcm(key: bytes) -> AESGCM:
    """An AES-256-GCM context for ``key``."""
    cls = _AESGCM or _load()
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise CryptoError(f"an AES-256 key must be {KEY_BYTES} bytes, not {type(key).__name__} "
                          f"of length {len(key) if isinstance(key, bytes) else '?'}")
    return cls(key)


def _open(aead: AESGCM, nonce: bytes, body: bytes, aad: bytes, what: str, hint: str) -> bytes:
    """Decrypt and authenticate, turning any failure into `TamperedDataError`."""
    try:
        return aead.decrypt(nonce, body, aad)
    except (_INVALID_TAG, ValueError, OverflowError) as e:
        raise TamperedDataError(f"cannot decrypt {what}: it was changed, truncated, or moved "
                                "from another record, event type or key", hint=hint) from e


def _check_passphrase(passphrase: object) -> bytes:
    if not isinstance(passphrase, str) or not passphrase:
        raise InvalidInputError("the encryption key (passphrase) must be a non-empty string",
                                hint="pass encryption_key= or set IOA_FABRIC_KEY")
    # NFC: the same passphrase typed on macOS (NFD input) and elsewhere gives the same key
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _key_id(master: bytes) -> str:
    return hmac.new(master, _KID_LABEL, hashlib.sha256).digest()[:KID_BYTES].hex()


class KeyParams(msgspec.Struct, frozen=True, kw_only=True):
    """How a store key is derived from its passphrase; public, kept in the store's first event.

    Raises `InvalidInputError` (a ``ValueError``, so msgspec decoding reports it as a
    ``ValidationError``) for parameters this version cannot or will not use.
    """

    kdf: str = "scrypt"
    salt: bytes
    n: int
    r: int
    p: int
    key_id: str

    def __post_init__(self) -> None:
        if self.kdf != "scrypt":
            raise InvalidInputError(f"unsupported key derivation {self.kdf!r}",
                                    hint="this store was written by a newer Memory Fabric; upgrade")
        if len(self.salt) < SALT_BYTES:
            raise InvalidInputError(f"scrypt salt must be at least {SALT_BYTES} bytes")
        n, r, p = self.n, self.r, self.p
        if n < 2 or n & (n - 1) or r < 1 or p < 1:
            raise InvalidInputError(f"bad scrypt parameters n={n} r={r} p={p} (n: power of 2)")
        if 128 * n * r > MAX_SCRYPT_MEMORY or n * r * p > MAX_SCRYPT_WORK:
            raise InvalidInputError(f"scrypt parameters n={n} r={r} p={p} exceed this version's limits")
        if len(self.key_id) != 2 * KID_BYTES or not _HEX.issuperset(self.key_id):
            raise InvalidInputError(f"bad key id {self.key_id!r} (want {2 * KID_BYTES} lowercase hex)")


def load_key_params(obj: object) -> KeyParams:
    """`KeyParams` from an event field (a plain dict after a log round trip, salt in base64)."""
    if isinstance(obj, KeyParams):
        return obj
    try:
        return msgspec.convert(obj, KeyParams)
    except msgspec.ValidationError as e:
        raise CryptoError(f"the store's encryption parameters are unusable: {e}",
                          hint=_VERIFY_HINT) from e


class StoreKey:
    """One derived store key: its public key id and a ready AES-GCM context for wrapping."""

    __slots__ = ("key_id", "params", "_kid", "_master", "_aead")

    def __init__(self, master: bytes, params: KeyParams | None = None) -> None:
        if len(master) != KEY_BYTES:
            raise CryptoError(f"a store key must be {KEY_BYTES} bytes")
        self.key_id: Final = _key_id(master)
        self.params: Final = params
        self._kid = bytes.fromhex(self.key_id)
        self._master = master  # kept only so `Keyring.export_key` can escrow it
        self._aead = _aesgcm(hmac.new(master, _WRAP_LABEL, hashlib.sha256).digest())

    def __repr__(self) -> str:
        return f"StoreKey(key_id={self.key_id!r})"


def _scrypt(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    _AESGCM or _load()  # so `_open` knows InvalidTag
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    try:
        return Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p).derive(passphrase)
    except (ValueError, MemoryError) as e:
        raise CryptoError(f"scrypt failed with n={n} r={r} p={p}: {e}") from e


def new_key_params(passphrase: str, *, n: int | None = None, r: int | None = None,
                   p: int | None = None) -> tuple[KeyParams, StoreKey]:
    """Fresh parameters (random salt) and their key, for a new store or a rotation.

    Cost defaults to `SCRYPT_N`/`SCRYPT_R`/`SCRYPT_P`; pass small ones only in tests.
    """
    secret = _check_passphrase(passphrase)
    n = SCRYPT_N if n is None else n
    r = SCRYPT_R if r is None else r
    p = SCRYPT_P if p is None else p
    salt = os.urandom(SALT_BYTES)
    KeyParams(salt=salt, n=n, r=r, p=p, key_id="0" * 2 * KID_BYTES)  # validate before paying
    master = _scrypt(secret, salt, n, r, p)
    params = KeyParams(salt=salt, n=n, r=r, p=p, key_id=_key_id(master))
    return params, StoreKey(master, params)


def derive_key(passphrase: str, params: KeyParams) -> StoreKey:
    """The store key for ``params``; `WrongKeyError` if the passphrase gives another key id."""
    master = _scrypt(_check_passphrase(passphrase), params.salt, params.n, params.r, params.p)
    if not hmac.compare_digest(_key_id(master), params.key_id):
        raise WrongKeyError(f"the encryption key given does not open this store: it expects "
                            f"key id {params.key_id}",
                            hint="check encryption_key / IOA_FABRIC_KEY; after a rotation, "
                                 "give the newest passphrase")
    return StoreKey(master, params)


class Keyring:
    """The store keys of one open store, by key id; the newest one wraps new data keys.

    Old key ids stay readable as long as their key is here (added again from its
    passphrase, or imported from an escrow blob). Each key is derived once, when added.
    """

    __slots__ = ("_keys", "_current", "_lock")

    def __init__(self, *keys: StoreKey) -> None:
        self._keys: dict[str, StoreKey] = {}
        self._current: StoreKey | None = None
        self._lock = threading.Lock()
        for key in keys:
            self.add(key)

    @classmethod
    def create(cls, passphrase: str, *, n: int | None = None, r: int | None = None,
               p: int | None = None) -> tuple[Keyring, KeyParams]:
        """A keyring for a new store, and the params to record in its first event."""
        params, key = new_key_params(passphrase, n=n, r=r, p=p)
        return cls(key), params

    @property
    def current(self) -> StoreKey:
        if self._current is None:
            raise MissingKeyError("the keyring holds no key", hint="pass encryption_key= or set IOA_FABRIC_KEY")
        return self._current

    @property
    def current_key_id(self) -> str:
        return self.current.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key_id: str, *, record_id: str | None = None) -> StoreKey:
        """The key with ``key_id``; `MissingKeyError` naming it (and the record) if absent."""
        key = self._keys.get(key_id)
        if key is None:
            whose = f"the data key of record {record_id!r} is" if record_id is not None else "data is"
            raise MissingKeyError(
                f"{whose} wrapped by key id {key_id}, which is not in the keyring "
                f"(it holds {', '.join(self._keys) or 'no key'})",
                hint="open with that key's passphrase too; a key may be dropped only after a "
                     "re-encrypting compaction has rewrapped everything it wrapped")
        return key

    def add(self, key: StoreKey, *, make_current: bool = True) -> StoreKey:
        with self._lock:
            key = self._keys.setdefault(key.key_id, key)
            if make_current or self._current is None:
                self._current = key
            return key

    def add_key(self, passphrase: str, params: KeyParams, *, make_current: bool = True) -> StoreKey:
        """Derive and add the key of ``params``; a key id already here is not derived again."""
        existing = self._keys.get(params.key_id)
        key = existing if existing is not None else derive_key(passphrase, params)
        return self.add(key, make_current=make_current)

    def new_key(self, passphrase: str, *, n: int | None = None, r: int | None = None,
                p: int | None = None) -> KeyParams:
        """Rotate: a new key (new salt, new key id) becomes current; returns its params."""
        params, key = new_key_params(passphrase, n=n, r=r, p=p)
        self.add(key)
        return params

    def drop_key(self, key_id: str) -> None:
        """Forget a key; what it wrapped becomes unreadable here. The current key stays."""
        with self._lock:
            if self._current is not None and key_id == self._current.key_id:
                raise CryptoError(f"key id {key_id} is the current key and cannot be dropped",
                                  hint="add a new key first (rotation)")
            self._keys.pop(key_id, None)

    def export_key(self, key_id: str) -> bytes:
        """Key ``key_id`` wrapped under the current key, so that after a rotation the newest
        passphrase alone opens older records (`import_key`). Store it in the log, not elsewhere."""
        old, cur = self.get(key_id), self.current
        nonce = os.urandom(NONCE_BYTES)
        aad = _AAD_ESCROW + _lp(cur._kid) + _lp(old._kid)
        return _V + cur._kid + old._kid + nonce + cur._aead.encrypt(nonce, old._master, aad)

    def import_key(self, blob: bytes) -> str:
        """Add (not as current) a key exported by `export_key`; returns its key id."""
        if len(blob) != _ESCROW_LEN or blob[0] != VERSION:
            raise TamperedDataError(f"an escrowed store key must be {_ESCROW_LEN} bytes of format "
                                    f"{VERSION}", hint=_VERIFY_HINT)
        wrapping = self.get(blob[1:9].hex())
        kid = blob[9:17]
        aad = _AAD_ESCROW + _lp(wrapping._kid) + _lp(kid)
        master = _open(wrapping._aead, blob[17:29], blob[29:], aad,
                       f"the escrowed store key {kid.hex()}", _VERIFY_HINT)
        key = StoreKey(master)
        if key._kid != kid:  # cannot happen unless the AAD check is broken; cheap to be sure
            raise TamperedDataError(f"escrowed key {kid.hex()} is not what it claims", hint=_VERIFY_HINT)
        return self.add(key, make_current=False).key_id

    def __repr__(self) -> str:
        cur = self._current.key_id if self._current else None
        return f"Keyring(key_ids={list(self._keys)!r}, current={cur!r})"


def escrowed_key_ids(blob: bytes) -> tuple[str, str]:
    """(wrapping key id, escrowed key id) an `export_key` blob claims (unauthenticated until
    imported): lets an opener import only what it can and wants, without trying each blob."""
    if len(blob) != _ESCROW_LEN or blob[0] != VERSION:
        raise TamperedDataError(f"an escrowed store key must be {_ESCROW_LEN} bytes of format "
                                f"{VERSION}", hint=_VERIFY_HINT)
    return blob[1:9].hex(), blob[9:17].hex()


def check_key(params_in_store: KeyParams | Mapping[str, Any] | None,
              passphrase: str | None) -> Keyring | None:
    """The keyring that opens a store, or None for an unencrypted store opened without a key.

    ``params_in_store``: the store's newest `KeyParams` (its first event's, or the last
    ``KeyRotated``'s). Raises `MissingKeyError`, `UnexpectedKeyError` or `WrongKeyError`.
    """
    if params_in_store is None:
        if passphrase is None:
            return None
        raise UnexpectedKeyError("an encryption key was given, but this store was created "
                                 "without encryption",
                                 hint="open it without encryption_key / IOA_FABRIC_KEY, or "
                                      "migrate it into a new encrypted store")
    params = load_key_params(params_in_store)
    if passphrase is None:
        raise MissingKeyError(f"this store is encrypted (key id {params.key_id}) and no key was given",
                              hint="pass encryption_key= or set IOA_FABRIC_KEY")
    return Keyring(derive_key(passphrase, params))


def new_data_key() -> bytes:
    """A fresh random 256-bit data key (DEK) for one record."""
    return os.urandom(KEY_BYTES)


def wrap_data_key(keys: Keyring | StoreKey, record_id: str, dek: bytes) -> bytes:
    """``dek`` encrypted under a store key (a keyring's current one), bound to ``record_id``."""
    key = keys.current if isinstance(keys, Keyring) else keys
    if not isinstance(dek, bytes) or len(dek) != KEY_BYTES:
        raise CryptoError(f"a data key must be {KEY_BYTES} bytes")
    nonce = os.urandom(NONCE_BYTES)
    aad = _AAD_DEK + _lps(record_id) + _lp_cached(key._kid)
    return _V + key._kid + nonce + key._aead.encrypt(nonce, dek, aad)


def wrapped_key_id(wrapped: bytes) -> str:
    """The key id a wrapped DEK claims (unauthenticated until unwrapped): what to rewrap."""
    if len(wrapped) != _WRAPPED_LEN or wrapped[0] != VERSION:
        raise TamperedDataError(f"a wrapped data key must be {_WRAPPED_LEN} bytes of format {VERSION}",
                                hint=_VERIFY_HINT)
    return wrapped[1:9].hex()


def unwrap_data_key(keys: Keyring | StoreKey, record_id: str, wrapped: bytes) -> bytes:
    """The DEK of ``record_id``. `MissingKeyError` if its key id is not in ``keys``
    (`WrongKeyError` for a single other `StoreKey`), `TamperedDataError` if it fails."""
    kid = wrapped_key_id(wrapped)
    if isinstance(keys, Keyring):
        key = keys.get(kid, record_id=record_id)
    elif kid != keys.key_id:
        raise WrongKeyError(f"the data key of record {record_id!r} is wrapped by key id {kid}, "
                            f"not {keys.key_id}")
    else:
        key = keys
    aad = _AAD_DEK + _lps(record_id) + _lp_cached(key._kid)
    return _open(key._aead, wrapped[9:21], wrapped[21:], aad,
                 f"the data key of record {record_id!r} (key id {kid})", _VERIFY_HINT)


def rewrap_data_key(keyring: Keyring, record_id: str, wrapped: bytes) -> bytes:
    """``wrapped`` under the keyring's current key (for re-encrypting compaction).

    Always authenticates; returns ``wrapped`` itself when it already uses the current key.
    """
    dek = unwrap_data_key(keyring, record_id, wrapped)
    if wrapped_key_id(wrapped) == keyring.current_key_id:
        return wrapped
    return wrap_data_key(keyring, record_id, dek)


def _seal_aad(record_id: str, event_type: str, key_id: str) -> bytes:
    return _AAD_SEAL + _lps(record_id) + _seal_aad_tail(event_type, key_id)


def seal(dek: bytes, plaintext: bytes, *, record_id: str, event_type: str, key_id: str) -> bytes:
    """``plaintext`` encrypted under the record's DEK, bound to record, event type and key id."""
    nonce = os.urandom(NONCE_BYTES)
    try:
        body = _aesgcm(dek).encrypt(nonce, plaintext, _seal_aad(record_id, event_type, key_id))
    except (ValueError, TypeError, OverflowError) as e:
        raise CryptoError(f"cannot encrypt the {event_type!r} event of record {record_id!r}: {e}") from e
    return _V + nonce + body


def open_sealed(dek: bytes, sealed: bytes, *, record_id: str, event_type: str, key_id: str) -> bytes:
    """The inverse of `seal`; `TamperedDataError` naming record and event type on any failure."""
    what = f"the {event_type!r} event of record {record_id!r} (key id {key_id})"
    if len(sealed) < _SEAL_MIN or sealed[0] != VERSION:
        raise TamperedDataError(f"cannot decrypt {what}: not a format-{VERSION} sealed blob "
                                "(truncated, changed, or written by a newer Memory Fabric)",
                                hint=_VERIFY_HINT)
    return _open(_aesgcm(dek), sealed[1:13], sealed[13:], _seal_aad(record_id, event_type, key_id),
                 what, _VERIFY_HINT)


_PAYLOAD_ENCODER: Final = msgspec.json.Encoder()
_PAYLOAD_DECODER: Final = msgspec.json.Decoder(dict[str, Any])


def seal_payload(keyring: Keyring, record_id: str, event_type: str, fields: Mapping[str, Any],
                 dek: bytes, *, key_id: str | None = None) -> bytes:
    """The sensitive ``fields`` (a subset of `SEALED_FIELDS`) as one sealed JSON blob.

    ``key_id`` defaults to the keyring's current one; record that same id in the event.
    """
    unknown = fields.keys() - SEALED_FIELDS
    if unknown:
        raise InvalidInputError(f"not sealable fields: {sorted(unknown)} (sealed: {sorted(SEALED_FIELDS)})")
    try:
        plaintext = _PAYLOAD_ENCODER.encode(fields)
    except (TypeError, ValueError) as e:
        raise InvalidInputError(f"record {record_id!r}: fields cannot be encoded: {e}") from e
    kid = keyring.current_key_id if key_id is None else key_id
    return seal(dek, plaintext, record_id=record_id, event_type=event_type, key_id=kid)


def open_payload(record_id: str, event_type: str, sealed: bytes, dek: bytes, *, key_id: str) -> dict[str, Any]:
    """The fields `seal_payload` sealed, as plain JSON values (embedding and metadata as dicts)."""
    plaintext = open_sealed(dek, sealed, record_id=record_id, event_type=event_type, key_id=key_id)
    try:
        return _PAYLOAD_DECODER.decode(plaintext)
    except msgspec.DecodeError as e:  # authentic but unreadable: a bug or a newer writer
        raise CryptoError(f"the {event_type!r} event of record {record_id!r} decrypts to "
                          f"unreadable fields: {e}") from e


def bench() -> None:
    """Print µs per operation (``python -m fabric.crypto --bench``); timings never go in tests."""
    import platform
    import time
    import timeit

    import cryptography

    def us(fn: Any) -> float:
        number, _ = timeit.Timer(fn).autorange()
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6

    t0 = time.perf_counter()
    ring, params = Keyring.create("correct horse battery staple")
    derive_ms = (time.perf_counter() - t0) * 1e3
    dek, kid = new_data_key(), ring.current_key_id
    fields = {"content": "x" * 200, "metadata": {"source": "chat", "turn": 7}, "tags": ["a", "b"]}
    sealed = seal_payload(ring, "rec-1", "stored", fields, dek)
    wrapped = wrap_data_key(ring, "rec-1", dek)
    raw = b"x" * 200
    rows = [
        ("new_data_key", us(new_data_key)),
        ("AESGCM(dek) construction", us(lambda: _aesgcm(dek))),
        ("wrap_data_key", us(lambda: wrap_data_key(ring, "rec-1", dek))),
        ("unwrap_data_key", us(lambda: unwrap_data_key(ring, "rec-1", wrapped))),
        ("seal 200 B", us(lambda: seal(dek, raw, record_id="rec-1", event_type="stored", key_id=kid))),
        ("seal_payload (200 B content)", us(lambda: seal_payload(ring, "rec-1", "stored", fields, dek))),
        ("open_payload (200 B content)",
         us(lambda: open_payload("rec-1", "stored", sealed, dek, key_id=kid))),
    ]
    print(f"fabric.crypto bench: Python {platform.python_version()}, cryptography "
          f"{cryptography.__version__}, msgspec {msgspec.__version__}")
    print(f"  scrypt derive n={params.n} r={params.r} p={params.p}: {derive_ms:9.1f} ms (once per open)")
    for name, t in rows:
        print(f"  {name:32s} {t:7.2f} µs")
    write = rows[0][1] + rows[2][1] + rows[5][1]
    print(f"  per new record (dek + wrap + seal_payload): {write:.2f} µs = {write / 30:.0%} of a "
          f"~30 µs plaintext store -> {30 / (30 + write):.0%} of plaintext throughput")


__all__ = [
    "KeyParams", "Keyring", "SCRYPT_N", "SCRYPT_P", "SCRYPT_R", "SEALED_FIELDS", "StoreKey",
    "check_key", "derive_key", "escrowed_key_ids", "load_key_params", "new_data_key", "new_key_params", "open_payload",
    "open_sealed", "rewrap_data_key", "seal", "seal_payload", "unwrap_data_key", "wrap_data_key",
    "wrapped_key_id",
]

if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--bench"]:
        sys.exit("usage: python -m fabric.crypto --bench")
    bench()
