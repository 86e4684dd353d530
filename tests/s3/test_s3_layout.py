"""Object names (one formatter, one parser), settings from config and env, and import hygiene."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fabric.errors import ConfigurationError
from fabric.fabric import MemoryFabric
from fabric.s3_layout import (
    ChunkName,
    StreamObject,
    check_writer,
    checkpoint_key,
    chunk_key,
    owner_key,
    parse_log_key,
    parse_record_key,
    record_key,
    resolve_settings,
)
from fabric.s3_restore import plan_chunks

ROOT = Path(__file__).resolve().parents[2]
writers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
seqs = st.integers(min_value=1, max_value=10**20 - 1)


@given(writers, seqs, st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_chunk_names_round_trip_and_sort_in_log_order(writer: str, segment: int, a: int, b: int) -> None:
    first = min(segment + a, 10**20 - 1)
    last = min(first + b, 10**20 - 1)
    key = chunk_key(writer, segment, first, last)
    assert parse_log_key(key) == ChunkName(writer, segment, first, last)
    later = chunk_key(writer, segment, last + 1, last + 1) if last + 1 < 10**20 else key
    assert key <= later  # fixed width: byte order is log order


def test_names_of_the_layout() -> None:
    assert chunk_key("w1", 1, 1, 42) == "log/w1/00000000000000000001/00000000000000000001-00000000000000000042.jsonl"
    assert record_key("abc") == "record_abc.json" and parse_record_key("record_abc.json") == "abc"
    assert parse_record_key("log/w/checkpoint.json") is None and parse_record_key("record_.json") is None
    assert parse_log_key(checkpoint_key("w1")) == StreamObject("w1", "checkpoint.json")
    assert parse_log_key(owner_key("w1")) == StreamObject("w1", "owner.json")
    for junk in ("log/w1/notes.txt", "log/w1/1/1-2.jsonl", "record_x.json", "log/-bad/checkpoint.json",
                 "log/w1/00000000000000000005/00000000000000000001-00000000000000000002.jsonl"):
        assert parse_log_key(junk) is None, junk
    with pytest.raises(ValueError):
        chunk_key("w1", 5, 4, 9)


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a b", "x" * 65, "..", "é"])
def test_writer_ids_that_cannot_name_a_stream_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="writer id"):
        check_writer(bad)


def test_plan_takes_a_gapless_chain_and_trims_overlaps() -> None:
    c = [ChunkName("w", 1, 1, 10), ChunkName("w", 1, 11, 20), ChunkName("w", 1, 11, 15),
         ChunkName("w", 1, 16, 30), ChunkName("w", 31, 31, 40), ChunkName("w", 31, 50, 60)]
    plan = plan_chunks(c)
    assert [(p.first, p.last, skip) for p, skip in plan] == [(1, 10, 0), (11, 20, 0), (16, 30, 5), (31, 40, 0)]
    assert plan_chunks([ChunkName("w", 1, 2, 5)]) == []


def test_settings_follow_the_seed_precedence() -> None:
    env = {"IOA_FABRIC_S3_BUCKET": "env-bucket", "IOA_FABRIC_S3_PREFIX": "custom/p", "AWS_DEFAULT_REGION": "eu-west-3",
           "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    s = resolve_settings({}, env)
    assert (s.bucket, s.prefix, s.region, s.endpoint_url) == ("env-bucket", "custom/p/", "eu-west-3", "http://127.0.0.1:9")
    s = resolve_settings({"bucket_name": "cfg-bucket", "prefix": "", "region": "us-west-2"},
                         {**env, "IOA_FABRIC_S3_REGION": "ap-south-1"})
    assert (s.bucket, s.prefix, s.region) == ("cfg-bucket", "", "us-west-2")
    s = resolve_settings({}, {"IOA_FABRIC_S3_BUCKET": "b-1"})
    assert (s.prefix, s.region, s.endpoint_url) == ("ioa/memory/", "us-east-1", None)
    assert resolve_settings({}, {"IOA_FABRIC_S3_BUCKET": "b-1", "IOA_FABRIC_S3_REGION": "ca-central-1",
                                 "AWS_DEFAULT_REGION": "x"}).region == "ca-central-1"


@pytest.mark.parametrize("config, match", [
    ({}, "IOA_FABRIC_S3_BUCKET"),
    ({"bucket_name": "Bad_Bucket"}, "not a valid S3 bucket name"),
    ({"bucket_name": "ok-bucket", "prefix": "a//b"}, "prefix"),
    ({"bucket_name": "ok-bucket", "prefix": "../x"}, "prefix"),
])
def test_bad_settings_are_configuration_errors(config: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        resolve_settings(config, {})


def test_a_missing_bucket_fails_before_anything_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IOA_FABRIC_S3_BUCKET", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigurationError, match="IOA_FABRIC_S3_BUCKET"):
        MemoryFabric(backend="s3")
    assert not (tmp_path / "artifacts").exists()


def test_importing_fabric_does_not_import_boto3() -> None:
    code = ("import sys, fabric, fabric.fabric, fabric.s3_layout, fabric.shipping, fabric.s3_restore\n"
            "import fabric.streams, fabric.doctor, fabric.cli.doctor, fabric.cli.restore, projections.s3\n"
            "assert 'boto3' not in sys.modules and 'botocore' not in sys.modules, 'boto3 imported'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
