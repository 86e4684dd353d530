"""Between events and log bytes: where encryption plugs in.

Every view reads the log through a codec, so a view never sees ciphertext and never
knows whether the store is encrypted. `PlainCodec` is the identity; the encrypted codec
(`fabric.crypto`) seals record fields on the way in and opens them on the way out.
"""

from __future__ import annotations

from typing import Protocol

from fabric.events import Event, decode_payload, encode_payload
from fabric.log import Envelope
from fabric.state import Change


class Codec(Protocol):
    encrypted: bool

    def encode(self, record_id: str, event: Event) -> bytes: ...

    def decode(self, env: Envelope) -> Change: ...


class PlainCodec:
    encrypted = False

    def encode(self, record_id: str, event: Event) -> bytes:
        return encode_payload(event)

    def decode(self, env: Envelope) -> Change:
        return Change(env.id, env.seq, env.ts, decode_payload(env.type, env.data))
