"""Choosing the codec for a store: plaintext, or encrypted with the store's key.

The store's first event (`StoreCreated`) says whether it is encrypted; the key given on
open must agree with it. Until encryption lands, an encrypted store is refused loudly.
"""

from __future__ import annotations

import uuid

from fabric.codec import Codec, PlainCodec
from fabric.errors import ConfigurationError
from fabric.events import StoreCreated
from fabric.log import EventLog


def genesis_for(key: str | None) -> StoreCreated:
    """The first event of a new store opened with ``key``."""
    if key is not None:
        raise ConfigurationError("encryption is not available in this build yet")
    return StoreCreated(log_id=uuid.uuid4().hex[:16])


def make_codec(log: EventLog, key: str | None) -> Codec:
    if key is not None:
        raise ConfigurationError("encryption is not available in this build yet")
    return PlainCodec()
