"""What the s3 backend keeps in a bucket, and where its settings come from.

Everything lives under one prefix (default ``ioa/memory/``)::

    <prefix>record_<id>.json                                  the record, as the seed's to_dict JSON
                                                              (sealed when the store is encrypted)
    <prefix>log/<writer>/owner.json                           which log (log_id) owns this writer id
    <prefix>log/<writer>/checkpoint.json                      how far the stream is shipped
    <prefix>log/<writer>/<segment 20d>/<first 20d>-<last 20d>.jsonl
                                                              log lines first..last of the segment
                                                              that starts at <segment>, byte for byte

Names come from one formatter and one parser each (`chunk_key` / `parse_log_key`,
`record_key` / `parse_record_key`); numbers are fixed width, so a plain sort is log order
in S3 (byte order) and in SeaweedFS (which lists directory by directory) alike. A chunk
never spans two local segments and always ends at the end of a batch, so a restore can
rebuild the segment files exactly.

Settings: `resolve_settings` applies the seed's precedence (config, then environment,
then default) and raises `ConfigurationError` naming the variable when no bucket is set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

import msgspec

from fabric.errors import ConfigurationError

LOG_DIR: Final = "log/"
RECORD_PREFIX: Final = "record_"
RECORD_SUFFIX: Final = ".json"
CHECKPOINT_NAME: Final = "checkpoint.json"
OWNER_NAME: Final = "owner.json"
CHUNK_SUFFIX: Final = ".jsonl"
LAYOUT_FORMAT: Final = 1

DEFAULT_PREFIX: Final = "ioa/memory/"
DEFAULT_REGION: Final = "us-east-1"

ENV_BUCKET: Final = "IOA_FABRIC_S3_BUCKET"
ENV_PREFIX: Final = "IOA_FABRIC_S3_PREFIX"
ENV_REGION: Final = "IOA_FABRIC_S3_REGION"
ENV_WRITER: Final = "IOA_FABRIC_WRITER"

_WRITER_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CHUNK_RE: Final = re.compile(r"([0-9]{20})/([0-9]{20})-([0-9]{20})\.jsonl")


# --- names ---------------------------------------------------------------------------


def check_writer(writer: Any) -> str:
    """A writer id names a directory in the bucket: 1-64 of ``A-Z a-z 0-9 . _ -``, starting alphanumeric."""
    if not isinstance(writer, str) or not _WRITER_RE.fullmatch(writer):
        raise ConfigurationError(
            f"writer id {writer!r} cannot name an S3 stream",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return writer


def record_key(record_id: str) -> str:
    return f"{RECORD_PREFIX}{record_id}{RECORD_SUFFIX}"


def parse_record_key(key: str) -> str | None:
    """The record id of a record object's key (relative to the prefix), or None."""
    if key.startswith(RECORD_PREFIX) and key.endswith(RECORD_SUFFIX) and "/" not in key:
        rid = key[len(RECORD_PREFIX):-len(RECORD_SUFFIX)]
        return rid or None
    return None


def stream_prefix(writer: str) -> str:
    return f"{LOG_DIR}{writer}/"


def segment_prefix(writer: str, segment: int) -> str:
    return f"{LOG_DIR}{writer}/{segment:020d}/"


def checkpoint_key(writer: str) -> str:
    return f"{LOG_DIR}{writer}/{CHECKPOINT_NAME}"


def owner_key(writer: str) -> str:
    return f"{LOG_DIR}{writer}/{OWNER_NAME}"


class ChunkName(NamedTuple):
    writer: str
    segment: int  # first seq of the local segment the lines belong to
    first: int
    last: int


def chunk_key(writer: str, segment: int, first: int, last: int) -> str:
    if not (1 <= segment <= first <= last):
        raise ValueError(f"bad chunk range: segment {segment}, lines {first}-{last}")
    return f"{LOG_DIR}{writer}/{segment:020d}/{first:020d}-{last:020d}{CHUNK_SUFFIX}"


class StreamObject(NamedTuple):
    writer: str
    name: str  # CHECKPOINT_NAME or OWNER_NAME


def parse_log_key(key: str) -> ChunkName | StreamObject | None:
    """What a key under ``log/`` (relative to the prefix) is: a chunk, a stream object, or None."""
    if not key.startswith(LOG_DIR):
        return None
    writer, sep, rest = key[len(LOG_DIR):].partition("/")
    if not sep or not _WRITER_RE.fullmatch(writer):
        return None
    if rest in (CHECKPOINT_NAME, OWNER_NAME):
        return StreamObject(writer, rest)
    m = _CHUNK_RE.fullmatch(rest)
    if m is None:
        return None
    segment, first, last = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1 <= segment <= first <= last):
        return None
    return ChunkName(writer, segment, first, last)


# --- objects -------------------------------------------------------------------------


class Owner(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``owner.json``: written once, with If-None-Match, by the first log that ships as ``writer``."""

    format: int = LAYOUT_FORMAT
    writer: str
    log_id: str
    created: int  # µs since the epoch


class Checkpoint(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``checkpoint.json``: written only after everything it covers is in the bucket.

    ``log_seq``: every line 1..log_seq is in chunks (``log_hash`` is the hash of line
    log_seq). ``records_seq``: every record object reflects at least the log up to it.
    """

    format: int = LAYOUT_FORMAT
    writer: str
    log_id: str
    log_seq: int = 0
    log_hash: str = ""
    records_seq: int = 0
    record_objects: bool = True
    encrypted: bool = False
    updated: int = 0  # µs since the epoch
    chunks: int = 0  # chunks this checkpoint's shipper has put (for the curious; restore lists)


_ENCODER: Final = msgspec.json.Encoder()
_OWNER_DECODER: Final = msgspec.json.Decoder(Owner)
_CHECKPOINT_DECODER: Final = msgspec.json.Decoder(Checkpoint)


def encode_object(obj: Owner | Checkpoint) -> bytes:
    return _ENCODER.encode(obj)


def decode_owner(data: bytes, key: str) -> Owner:
    try:
        return _OWNER_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"{key} in the bucket is not an owner object: {e}") from e


def decode_checkpoint(data: bytes, key: str) -> Checkpoint:
    try:
        return _CHECKPOINT_DECODER.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"{key} in the bucket is not a checkpoint object: {e}") from e


# --- settings ------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Settings:
    """Where the s3 backend ships to. ``prefix`` is empty or ends with ``/``."""

    bucket: str
    prefix: str
    region: str
    endpoint_url: str | None

    def as_config(self) -> dict[str, Any]:
        return {"bucket_name": self.bucket, "prefix": self.prefix, "region": self.region,
                "endpoint_url": self.endpoint_url}

    def url(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name)
    return value if value else None


def resolve_settings(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> S3Settings:
    """The seed's precedence: ``config`` (``bucket_name``, ``prefix``, ``region``, ``endpoint_url``),
    then ``IOA_FABRIC_S3_*`` (and ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL[_S3]``), then defaults.

    Unlike the seed there is no default bucket: shipping to a bucket nobody named is a
    `ConfigurationError` that says which variable to set.
    """
    env = os.environ if environ is None else environ
    bucket = config.get("bucket_name") or config.get("bucket") or _env(ENV_BUCKET, env)
    if not bucket:
        raise ConfigurationError(
            f"the s3 backend needs a bucket: set {ENV_BUCKET} or config['bucket_name']",
            hint=f"export {ENV_BUCKET}=your-bucket-name")
    if not isinstance(bucket, str) or not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ConfigurationError(f"{bucket!r} is not a valid S3 bucket name ({ENV_BUCKET} / config['bucket_name'])")
    raw_prefix = config.get("prefix")
    if raw_prefix is None:
        raw_prefix = env.get(ENV_PREFIX, DEFAULT_PREFIX)
    if not isinstance(raw_prefix, str):
        raise ConfigurationError(f"prefix must be a string, not {type(raw_prefix).__name__}")
    prefix = raw_prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # the seed concatenated blindly ("ioa/memoryx.json"); a prefix here is a directory
    if any(seg in ("", ".", "..") for seg in prefix.split("/")[:-1]) or any(ord(c) < 0x20 for c in prefix):
        raise ConfigurationError(f"S3 prefix {raw_prefix!r} has an empty, '.' or '..' segment or a control character")
    region = config.get("region") or _env(ENV_REGION, env) or _env("AWS_DEFAULT_REGION", env) or DEFAULT_REGION
    endpoint = (config.get("endpoint_url") or config.get("endpoint") or _env("AWS_ENDPOINT_URL_S3", env)
                or _env("AWS_ENDPOINT_URL", env))
    return S3Settings(bucket=bucket, prefix=prefix, region=str(region), endpoint_url=endpoint or None)


def open_store(settings: S3Settings, *, prefix_suffix: str = "", **options: Any) -> Any:
    """An `S3ObjectStore` for ``settings`` (boto3 is imported here, not before).

    ``options`` go to `S3ObjectStore` (timeout, retries, max_elapsed, ...).
    """
    try:
        from fabric.objectstore import S3ObjectStore  # noqa: PLC0415
        return S3ObjectStore(settings.bucket, prefix=settings.prefix + prefix_suffix, region=settings.region,
                             endpoint_url=settings.endpoint_url, **options)
    except ModuleNotFoundError as e:
        raise ConfigurationError(f"the s3 backend needs boto3: {e}",
                                 hint="pip install 'memory-fabric[s3]'") from e
