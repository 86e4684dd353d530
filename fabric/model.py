"""What a record is, as users see it, and what input is acceptable.

The public `MemoryRecord` keeps the seed's field names and types (``memory_type`` and
``storage_tier`` are enums with ``.value``, timestamps are aware datetimes), and each one
handed out is a fresh object: mutating it never changes the store.

Validation happens once, here, before anything reaches the log: a bad argument is an
`InvalidRecordError` and nothing is written.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Final

import msgspec

from fabric.errors import InvalidRecordError
from fabric.events import Embedding
from fabric.state import SCHEMA_VERSION, Record


class StorageTier(str, Enum):
    HOT = "hot"
    COLD = "cold"
    AUTO = "auto"


class MemoryType(str, Enum):
    CONVERSATION = "conversation"
    KNOWLEDGE = "knowledge"
    CONTEXT = "context"
    METADATA = "metadata"


#: The seed's name for the embedding type.
EmbeddingV1 = Embedding

MAX_ID_LENGTH: Final = 256
MAX_CONTENT_BYTES: Final = 64 * 1024 * 1024
MAX_METADATA_DEPTH: Final = 64
_BAD_ID: Final = re.compile(r"[\x00-\x1f\x7f/\\]")
_ENCODER: Final = msgspec.json.Encoder()
_META_DECODER: Final = msgspec.json.Decoder(dict[str, Any])


class MemoryRecord(msgspec.Struct, kw_only=True):
    """A memory record, shaped like the seed's ``MemoryRecordV1``."""

    id: str
    content: str
    metadata: dict[str, Any]
    timestamp: datetime
    tags: list[str]
    storage_tier: StorageTier
    memory_type: MemoryType
    access_count: int = 0
    last_accessed: datetime | None = None
    embedding: Embedding | None = None
    schema_version: str = SCHEMA_VERSION
    seq: int = 0  # log position of the last change (not in the seed)

    def to_dict(self) -> dict[str, Any]:
        """Seed-compatible dict: ISO timestamps, enum values."""
        out: dict[str, Any] = msgspec.to_builtins(self)
        out["storage_tier"] = self.storage_tier.value
        out["memory_type"] = self.memory_type.value
        return out


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)


def datetime_to_us(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1_000_000)


def _copy_embedding(emb: Embedding | None) -> Embedding | None:
    """Views hold one Embedding per record; its vector is a list, so hand out a copy."""
    if emb is None:
        return None
    return Embedding(vector=list(emb.vector), model=emb.model, dimension=emb.dimension)


def to_public(record: Record, *, extra_access: tuple[int, int] | None = None) -> MemoryRecord:
    count = record.access_count
    last = record.last_accessed
    if extra_access is not None:
        count += extra_access[0]
        last = extra_access[1] if last is None or extra_access[1] > last else last
    return MemoryRecord(
        id=record.id,
        content=record.content,
        metadata=_META_DECODER.decode(record.metadata),
        timestamp=us_to_datetime(record.timestamp),
        tags=list(record.tags),
        storage_tier=StorageTier(record.storage_tier),
        memory_type=MemoryType(record.memory_type),
        access_count=count,
        last_accessed=us_to_datetime(last) if last is not None else None,
        embedding=_copy_embedding(record.embedding),
        seq=record.seq,
    )


# --- ids -----------------------------------------------------------------------------

_id_lock = threading.Lock()
_last_ms = 0
_counter = 0
_entropy = b""
_entropy_pos = 0


def _reset_after_fork() -> None:
    """A forked child must not reuse its parent's random bytes (ids would collide)."""
    global _entropy, _entropy_pos, _id_lock
    _entropy, _entropy_pos, _id_lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def new_id() -> str:
    """A UUIDv7: time-ordered (SQLite inserts in key order), unique, monotonic within a process."""
    global _last_ms, _counter, _entropy, _entropy_pos
    with _id_lock:
        if _entropy_pos + 10 > len(_entropy):
            _entropy, _entropy_pos = os.urandom(4096), 0  # one syscall per ~400 ids
        chunk = _entropy[_entropy_pos:_entropy_pos + 10]
        _entropy_pos += 10
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(chunk[8:], "big") & 0x3FF
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand = int.from_bytes(chunk[:8], "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def check_id(record_id: Any) -> str:
    """Ids are used in file and object names: no separators, no control characters, not '.' or '..'."""
    if not isinstance(record_id, str):
        raise InvalidRecordError(f"record_id must be a string, not {type(record_id).__name__}")
    if not record_id or len(record_id) > MAX_ID_LENGTH:
        raise InvalidRecordError(f"record_id must have 1 to {MAX_ID_LENGTH} characters")
    if record_id in (".", "..") or _BAD_ID.search(record_id):
        raise InvalidRecordError(f"record_id {record_id!r} may not contain '/', '\\', control characters, or be '.'/'..'")
    _check_text(record_id, "record_id")
    return record_id


# --- fields --------------------------------------------------------------------------


def _check_text(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidRecordError(f"{what} is not valid Unicode (lone surrogate at index {e.start})") from e


def check_content(content: Any) -> str:
    if not isinstance(content, str):
        raise InvalidRecordError(f"content must be a string, not {type(content).__name__}")
    _check_text(content, "content")
    if len(content) > MAX_CONTENT_BYTES // 4 and len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
        raise InvalidRecordError(f"content is larger than {MAX_CONTENT_BYTES} bytes")
    return content


def _check_json(value: Any, where: str, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise InvalidRecordError(f"metadata nests deeper than {MAX_METADATA_DEPTH} levels")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_text(value, f"metadata value at {where}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRecordError(f"metadata value at {where} is {value!r}; JSON has no NaN or infinity")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise InvalidRecordError(f"metadata keys must be strings; {k!r} at {where} is not")
            _check_text(k, f"metadata key at {where}")
            _check_json(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]", depth + 1)
    else:
        raise InvalidRecordError(f"metadata value at {where} is a {type(value).__name__}, which JSON cannot hold")


def encode_metadata(metadata: Any) -> bytes:
    """Metadata as JSON bytes; must be a JSON object (dict with string keys)."""
    if metadata is None:
        return b"{}"
    if not isinstance(metadata, Mapping):
        raise InvalidRecordError(f"metadata must be a dict (a JSON object), not {type(metadata).__name__}")
    # Fast path: JSON round trip gives back an equal value only for plain JSON data (no NaN, no
    # non-string keys, no sets/bytes/tuples); the walker below explains any failure precisely.
    try:
        encoded = _ENCODER.encode(metadata)
        if len(encoded) < 2 * MAX_METADATA_DEPTH and _META_DECODER.decode(encoded) == metadata:
            return encoded
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.DecodeError):
        pass
    _check_json(dict(metadata), "metadata", 0)
    try:
        return _ENCODER.encode(metadata)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise InvalidRecordError(f"metadata cannot be stored as JSON: {e}") from e


def check_tags(tags: Any) -> list[str]:
    if tags is None:
        return []
    if isinstance(tags, (str, bytes)) or not isinstance(tags, (list, tuple)):
        raise InvalidRecordError(f"tags must be a list of strings, not {type(tags).__name__}")
    for t in tags:
        if not isinstance(t, str):
            raise InvalidRecordError(f"every tag must be a string; {t!r} is not")
        _check_text(t, "tag")
    return list(tags)


_ENUM_VALUES: Final[dict[type[Enum], dict[str, str]]] = {
    e: {str(m.value): str(m.value) for m in e} for e in (MemoryType, StorageTier)  # type: ignore[attr-defined]
}


def _enum_value(value: Any, enum: type[Enum], what: str) -> str:
    if isinstance(value, str):  # str enums hash and compare as their value
        found = _ENUM_VALUES[enum].get(value)
        if found is not None:
            return found
    allowed = ", ".join(str(m.value) for m in enum)  # type: ignore[attr-defined]
    raise InvalidRecordError(f"unknown {what} {value!r}; use one of: {allowed}")


def check_memory_type(value: Any) -> str:
    return _enum_value(value, MemoryType, "memory_type")


def check_storage_tier(value: Any) -> str:
    return _enum_value(value, StorageTier, "storage_tier")


def check_embedding(value: Any) -> Embedding | None:
    """Accepts an `Embedding` (the seed's ``EmbeddingV1``), a dict of its fields, or a list of floats."""
    if value is None:
        return None
    vector: Any
    model: Any
    dim: Any
    if isinstance(value, Embedding):
        vector, model, dim = value.vector, value.model, value.dimension
    elif isinstance(value, Mapping):
        vector, model, dim = value.get("vector"), value.get("model", ""), value.get("dimension", 0)
    elif isinstance(value, (list, tuple)):
        vector, model, dim = list(value), "", 0
    elif hasattr(value, "vector"):
        vector, model, dim = value.vector, getattr(value, "model", ""), getattr(value, "dimension", 0)
    else:
        raise InvalidRecordError(f"embedding must be a list of numbers or an Embedding, not {type(value).__name__}")
    if not isinstance(vector, (list, tuple)) or not vector:
        raise InvalidRecordError("embedding vector must be a non-empty list of numbers")
    out: list[float] = []
    for x in vector:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise InvalidRecordError(f"embedding values must be finite numbers; {x!r} is not")
        out.append(float(x))
    if not isinstance(model, str) or not isinstance(dim, int) or isinstance(dim, bool):
        raise InvalidRecordError("embedding model must be a string and dimension an integer")
    if dim and dim != len(out):
        raise InvalidRecordError(f"embedding dimension {dim} does not match its {len(out)} values")
    return Embedding(vector=out, model=model, dimension=dim or len(out))


def parse_when(value: Any) -> int:
    """A time (datetime, ISO string or epoch seconds) as µs since the epoch."""
    if isinstance(value, datetime):
        return datetime_to_us(value)
    if isinstance(value, str):
        try:
            return datetime_to_us(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError as e:
            raise InvalidRecordError(f"cannot read {value!r} as a time (use ISO 8601)") from e
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000)
    raise InvalidRecordError(f"cannot read {value!r} as a time")


