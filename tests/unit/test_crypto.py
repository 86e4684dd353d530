"""fabric.crypto: key derivation, key ids, envelope wrapping, sealing, rotation, errors."""

from __future__ import annotations

import functools
import hashlib
import hmac
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabric import crypto
from fabric.crypto import (
    KeyParams,
    Keyring,
    StoreKey,
    check_key,
    derive_key,
    load_key_params,
    new_data_key,
    new_key_params,
    open_payload,
    open_sealed,
    rewrap_data_key,
    seal,
    seal_payload,
    unwrap_data_key,
    wrap_data_key,
    wrapped_key_id,
)
from fabric.errors import (
    CryptoError,
    InvalidInputError,
    MissingKeyError,
    TamperedDataError,
    UnexpectedKeyError,
    WrongKeyError,
)
from fabric.events import Embedding

FAST: dict[str, int] = {"n": 2**4, "r": 8, "p": 1}  # tests only; real stores use the defaults
PASS = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def ring_and_params(passphrase: str = PASS) -> tuple[Keyring, KeyParams]:
    """One keyring per passphrase for the whole module (hypothesis reuses it across examples)."""
    return Keyring.create(passphrase, **FAST)


def ring() -> Keyring:
    return ring_and_params()[0]


def kid() -> str:
    return ring().current_key_id


# --- parameters and key ids ---------------------------------------------------------------


def test_defaults_are_strong() -> None:
    assert (crypto.SCRYPT_N, crypto.SCRYPT_R, crypto.SCRYPT_P) == (2**17, 8, 1)
    params, _ = new_key_params(PASS)  # ~0.3 s: the one test that pays the real cost
    assert (params.kdf, params.n, params.r, params.p) == ("scrypt", 2**17, 8, 1)
    assert len(params.salt) == 16


def test_key_params_round_trip_through_an_event_as_json() -> None:
    _, params = ring_and_params()
    line = msgspec.json.encode({"encryption": params})
    as_dict = msgspec.json.decode(line)["encryption"]
    assert isinstance(as_dict["salt"], str)  # base64 in the log
    assert load_key_params(as_dict) == params
    assert load_key_params(msgspec.to_builtins(params)) == params
    assert load_key_params(params) is params


def test_new_params_get_a_fresh_salt_and_key_id_for_the_same_passphrase() -> None:
    a, key_a = new_key_params(PASS, **FAST)
    b, key_b = new_key_params(PASS, **FAST)
    assert a.salt != b.salt and a.key_id != b.key_id
    assert (key_a.key_id, key_b.key_id) == (a.key_id, b.key_id)


def test_key_id_is_short_stable_and_not_the_key() -> None:
    params, key = new_key_params(PASS, **FAST)
    assert len(key.key_id) == 16 and int(key.key_id, 16) >= 0
    assert key.key_id == hmac.new(key._master, b"memory-fabric key id", hashlib.sha256).digest()[:8].hex()
    assert derive_key(PASS, params).key_id == key.key_id
    assert key.key_id not in key._master.hex()


def test_passphrase_is_nfc_normalized() -> None:
    params, key = new_key_params("caf\u00e9", **FAST)
    assert derive_key("cafe\u0301", params).key_id == key.key_id


@pytest.mark.parametrize("bad", [
    {"kdf": "argon2id"}, {"salt": b"short"}, {"n": 1000}, {"n": 1}, {"r": 0}, {"p": 0},
    {"n": 2**30}, {"key_id": "XYZ"}, {"key_id": "00"},
])
def test_unusable_params_are_refused_before_any_derivation(bad: dict[str, Any]) -> None:
    _, params = ring_and_params()
    fields = msgspec.to_builtins(params) | msgspec.to_builtins(bad)
    with pytest.raises(CryptoError, match="encryption parameters are unusable"):
        load_key_params(fields)
    with pytest.raises(CryptoError, match="encryption parameters are unusable"):
        check_key(fields, PASS)


@pytest.mark.parametrize("bad", ["", b"bytes", None])
def test_passphrase_must_be_a_nonempty_string(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        new_key_params(bad, **FAST)


# --- check_key: opening a store ------------------------------------------------------------


def test_check_key_unencrypted_store_without_key() -> None:
    assert check_key(None, None) is None


def test_check_key_unexpected_key() -> None:
    with pytest.raises(UnexpectedKeyError, match="created without encryption") as e:
        check_key(None, PASS)
    assert e.value.hint


def test_check_key_missing_key_names_the_key_id() -> None:
    _, params = ring_and_params()
    with pytest.raises(MissingKeyError, match=params.key_id) as e:
        check_key(params, None)
    assert "IOA_FABRIC_KEY" in str(e.value)


def test_check_key_wrong_key_names_the_expected_key_id() -> None:
    _, params = ring_and_params()
    with pytest.raises(WrongKeyError, match=f"expects key id {params.key_id}") as e:
        check_key(msgspec.to_builtins(params), "Correct horse battery staple")
    assert e.value.hint
    assert "Correct horse" not in str(e.value)


def test_check_key_right_key_gives_a_keyring() -> None:
    _, params = ring_and_params()
    keyring = check_key(msgspec.to_builtins(params), PASS)
    assert keyring is not None and keyring.current_key_id == params.key_id


# --- seal / open ---------------------------------------------------------------------------


@given(plaintext=st.binary(max_size=2048), record_id=st.text(st.characters(exclude_categories=()), max_size=40),
       event_type=st.text(max_size=12))
def test_seal_round_trip(plaintext: bytes, record_id: str, event_type: str) -> None:
    dek = new_data_key()
    sealed = seal(dek, plaintext, record_id=record_id, event_type=event_type, key_id=kid())
    assert isinstance(sealed, bytes) and sealed[0] == 1
    assert len(sealed) == len(plaintext) + 29
    assert open_sealed(dek, sealed, record_id=record_id, event_type=event_type, key_id=kid()) == plaintext


DEK = new_data_key()
PLAINTEXT = b"the user's secret diary entry, 2024-05-01: I like tea"
SEALED = seal(DEK, PLAINTEXT, record_id="rec-1", event_type="stored", key_id="0123456789abcdef")


def _open_default(sealed: bytes, **over: str) -> bytes:
    ctx = {"record_id": "rec-1", "event_type": "stored", "key_id": "0123456789abcdef"} | over
    return open_sealed(DEK, sealed, **ctx)


@given(data=st.data())
def test_any_changed_byte_is_detected(data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(SEALED) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="xor mask")
    tampered = bytearray(SEALED)
    tampered[pos] ^= mask
    with pytest.raises(TamperedDataError, match="'stored' event of record 'rec-1'"):
        _open_default(bytes(tampered))


@given(cut=st.integers(0, len(SEALED) - 1))
def test_truncation_is_detected(cut: int) -> None:
    with pytest.raises(TamperedDataError):
        _open_default(SEALED[:cut])


def test_appended_bytes_are_detected() -> None:
    with pytest.raises(TamperedDataError):
        _open_default(SEALED + b"\x00")


@pytest.mark.parametrize("moved", [
    {"record_id": "rec-2"}, {"event_type": "updated"}, {"key_id": "fedcba9876543210"},
    {"record_id": "rec-1stored", "event_type": ""},  # length prefixes: no ambiguity
])
def test_ciphertext_moved_to_another_context_fails(moved: dict[str, str]) -> None:
    with pytest.raises(TamperedDataError) as e:
        _open_default(SEALED, **moved)
    assert repr(moved.get("record_id", "rec-1")) in str(e.value)
    assert e.value.hint


def test_another_records_data_key_fails() -> None:
    with pytest.raises(TamperedDataError):
        open_sealed(new_data_key(), SEALED, record_id="rec-1", event_type="stored", key_id="0123456789abcdef")


def test_two_seals_of_the_same_plaintext_differ() -> None:
    a = seal(DEK, PLAINTEXT, record_id="rec-1", event_type="stored", key_id="0123456789abcdef")
    b = seal(DEK, PLAINTEXT, record_id="rec-1", event_type="stored", key_id="0123456789abcdef")
    assert a != b and a[1:13] != b[1:13]  # fresh nonce


def test_no_plaintext_in_sealed_output() -> None:
    for chunk in (b"diary", b"tea", b"2024", PLAINTEXT[:8], PLAINTEXT[-8:]):
        assert chunk not in SEALED


@pytest.mark.parametrize("dek", [b"", b"x" * 16, b"x" * 31, "x" * 32])
def test_bad_data_key_is_a_crypto_error_not_a_dependency_error(dek: Any) -> None:
    with pytest.raises(CryptoError):
        seal(dek, b"x", record_id="r", event_type="stored", key_id=kid())
    with pytest.raises(CryptoError):
        open_sealed(dek, SEALED, record_id="rec-1", event_type="stored", key_id="0123456789abcdef")
    with pytest.raises(CryptoError):
        wrap_data_key(ring(), "r", dek)


# --- wrapped data keys -----------------------------------------------------------------------


def test_wrap_round_trip_and_format() -> None:
    dek = new_data_key()
    wrapped = wrap_data_key(ring(), "rec-1", dek)
    assert dek not in wrapped and len(wrapped) == 69
    assert wrapped_key_id(wrapped) == kid()
    assert unwrap_data_key(ring(), "rec-1", wrapped) == dek
    assert unwrap_data_key(ring().current, "rec-1", wrapped) == dek
    assert wrap_data_key(ring(), "rec-1", dek) != wrapped


def test_unwrap_with_another_record_id_fails() -> None:
    wrapped = wrap_data_key(ring(), "rec-1", new_data_key())
    with pytest.raises(TamperedDataError, match="record 'rec-2'"):
        unwrap_data_key(ring(), "rec-2", wrapped)


@given(pos=st.integers(0, 68), mask=st.integers(1, 255))
def test_any_changed_byte_in_a_wrapped_key_is_refused(pos: int, mask: int) -> None:
    wrapped = bytearray(wrap_data_key(ring(), "rec-1", DEK))
    wrapped[pos] ^= mask
    # bytes 1..8 name the key id: changed, they name a key this keyring does not hold
    expected = MissingKeyError if 1 <= pos <= 8 else TamperedDataError
    with pytest.raises(expected):
        unwrap_data_key(ring(), "rec-1", bytes(wrapped))


def test_unwrap_with_a_single_other_store_key_is_a_wrong_key() -> None:
    _, other = new_key_params("other", **FAST)
    wrapped = wrap_data_key(ring(), "rec-1", DEK)
    with pytest.raises(WrongKeyError, match=kid()):
        unwrap_data_key(other, "rec-1", wrapped)


# --- rotation ---------------------------------------------------------------------------------


def test_rotation_rewrap_and_drop() -> None:
    keyring, params1 = Keyring.create("old passphrase", **FAST)
    old_kid = keyring.current_key_id
    dek_a = new_data_key()
    wrapped_a = wrap_data_key(keyring, "a", dek_a)
    sealed_a = seal_payload(keyring, "a", "stored", {"content": "from before"}, dek_a)

    params2 = keyring.new_key("new passphrase", **FAST)
    assert keyring.current_key_id == params2.key_id != old_kid
    assert set(keyring.key_ids) == {old_kid, params2.key_id}
    assert unwrap_data_key(keyring, "a", wrapped_a) == dek_a  # old records stay readable
    assert wrapped_key_id(wrap_data_key(keyring, "b", new_data_key())) == params2.key_id

    rewrapped_a = rewrap_data_key(keyring, "a", wrapped_a)
    assert wrapped_key_id(rewrapped_a) == params2.key_id
    assert rewrap_data_key(keyring, "a", rewrapped_a) is rewrapped_a  # already current

    with pytest.raises(CryptoError, match="current key"):
        keyring.drop_key(params2.key_id)
    keyring.drop_key(old_kid)
    with pytest.raises(MissingKeyError, match=f"record 'a' is wrapped by key id {old_kid}") as e:
        unwrap_data_key(keyring, "a", wrapped_a)
    assert "compaction" in str(e.value)
    dek = unwrap_data_key(keyring, "a", rewrapped_a)
    # the sealed payload stays bound to the key id it was sealed under, whatever wraps its DEK
    assert open_payload("a", "stored", sealed_a, dek, key_id=old_kid) == {"content": "from before"}

    reopened = Keyring()
    reopened.add_key("old passphrase", params1)
    reopened.add_key("new passphrase", params2)
    assert reopened.current_key_id == params2.key_id
    assert unwrap_data_key(reopened, "a", wrapped_a) == dek_a


def test_escrowed_old_key_lets_the_newest_passphrase_alone_read_old_records() -> None:
    keyring, _ = Keyring.create("old passphrase", **FAST)
    old_kid = keyring.current_key_id
    wrapped = wrap_data_key(keyring, "a", DEK)
    params2 = keyring.new_key("new passphrase", **FAST)
    escrow = keyring.export_key(old_kid)
    assert keyring.current._master not in escrow

    reopened = check_key(params2, "new passphrase")
    assert reopened is not None and old_kid not in reopened
    assert reopened.import_key(escrow) == old_kid
    assert reopened.current_key_id == params2.key_id  # imported keys never become current
    assert unwrap_data_key(reopened, "a", wrapped) == DEK

    tampered = bytearray(escrow)
    tampered[-1] ^= 1
    with pytest.raises(TamperedDataError):
        Keyring(reopened.current).import_key(bytes(tampered))
    with pytest.raises(MissingKeyError):  # escrow needs the key it was wrapped under
        Keyring.create("unrelated", **FAST)[0].import_key(escrow)


def test_add_key_derives_each_key_once(monkeypatch: pytest.MonkeyPatch) -> None:
    keyring, params = Keyring.create(PASS, **FAST)
    calls: list[int] = []
    real = crypto._scrypt

    def counting(*args: Any) -> bytes:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(crypto, "_scrypt", counting)
    keyring.add_key(PASS, params)
    keyring.add_key(PASS, params)
    assert calls == []
    Keyring().add_key(PASS, params)
    assert len(calls) == 1


def test_empty_keyring_is_a_missing_key() -> None:
    with pytest.raises(MissingKeyError):
        Keyring().current_key_id  # noqa: B018


# --- payloads -------------------------------------------------------------------------------


FIELDS: dict[str, Any] = {
    "content": "meet Alice at the harbour",
    "metadata": msgspec.Raw(b'{"source":"chat","secret":"hunter2"}'),
    "tags": ["private-tag"],
    "embedding": Embedding(vector=[0.25, -1.5], model="mini", dimension=2),
}


def test_payload_round_trip_and_binding() -> None:
    dek = new_data_key()
    sealed = seal_payload(ring(), "rec-9", "updated", FIELDS, dek)
    opened = open_payload("rec-9", "updated", sealed, dek, key_id=kid())
    assert opened == {
        "content": "meet Alice at the harbour",
        "metadata": {"source": "chat", "secret": "hunter2"},
        "tags": ["private-tag"],
        "embedding": {"vector": [0.25, -1.5], "model": "mini", "dimension": 2},
    }
    for word in (b"Alice", b"harbour", b"hunter2", b"private-tag", b"mini", b"source"):
        assert word not in sealed
    with pytest.raises(TamperedDataError, match="'stored' event of record 'rec-9'"):
        open_payload("rec-9", "stored", sealed, dek, key_id=kid())


def test_payload_refuses_fields_that_are_not_sealed() -> None:
    with pytest.raises(InvalidInputError, match="memory_type"):
        seal_payload(ring(), "r", "stored", {"content": "x", "memory_type": "fact"}, DEK)


# --- keys in memory, import cost -------------------------------------------------------------


def test_repr_never_shows_key_material() -> None:
    keyring = ring()
    key = keyring.current
    secrets = [key._master, key._master.hex(), PASS]
    for text in (repr(keyring), str(keyring), repr(key), str(key)):
        assert keyring.current_key_id in text
        assert not any(str(s) in text for s in secrets)
    assert isinstance(key, StoreKey)
    held = [getattr(key, name) for name in type(key).__slots__] + [keyring._keys, keyring._current]
    assert not any(isinstance(v, str) and PASS in v for v in held)


def test_import_does_not_load_cryptography() -> None:
    code = "import sys, fabric.crypto; print('cryptography' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
