"""Keyed hashes as vectorised Spark functions: HMAC-SHA256 for masking and key-store lookups.

The secret travels inside the pickled function to the workers; it never appears as a literal
in a query plan (plans are shown in logs and the Spark UI).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path

import mmh3
import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

from strm_spark._pandas import is_null
from strm_spark.errors import UsageError


def hmac_sha256_hex(secret: bytes, value: str) -> str:
    return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hmac_column(col: Column, secret: bytes, null_as: str | None = None) -> Column:
    """HMAC-SHA256 (hex) of a string column. Nulls stay null, or hash as `null_as` if given."""

    def _hash(values: pd.Series) -> pd.Series:
        present = [null_as if is_null(v) else v for v in values]
        return pd.Series(
            [None if v is None else hmac_sha256_hex(secret, v) for v in present], dtype=object
        )

    udf = F.pandas_udf(_hash, "string")
    return udf(col.cast("string"))


def strm_murmur3_hex(seed: str, value: str) -> str:
    """STRM's masking hash: MurmurHash3 x64_128 (hash seed 0) of UTF-8 `seed + value`, as
    hex(h1) + hex(h2) of the two unsigned 64-bit halves without zero padding."""
    digest = mmh3.hash_bytes((seed + value).encode("utf-8"), 0, True)
    h1 = int.from_bytes(digest[:8], "little")
    h2 = int.from_bytes(digest[8:], "little")
    return f"{h1:x}{h2:x}"


def murmur3_column(col: Column, seed: str) -> Column:
    """STRM-compatible MurmurHash3 masking of a string column (vectorised per Arrow batch)."""

    def _hash(values: pd.Series) -> pd.Series:
        return pd.Series(
            [None if is_null(v) else strm_murmur3_hex(seed, v) for v in values],
            dtype=object,
        )

    return F.pandas_udf(_hash, "string")(col.cast("string"))


def masker_for(
    hash_type: str, inline_seed: str | None, secret: bytes | None
) -> Callable[[Column], Column]:
    """The masking function of a derived output: HMAC-SHA256 keyed with the job's secret seed
    (native jobs), or STRM's MurmurHash3 / HMAC with the seed written in a STRM config."""
    if hash_type == "MURMUR3":
        return lambda c: murmur3_column(c, inline_seed or "")
    key = inline_seed.encode("utf-8") if inline_seed else secret
    if not key:
        raise UsageError("HMAC_SHA256 masking needs a secret seed")
    return lambda c: hmac_column(c, key)


def new_secret_file(path: str | Path) -> bool:
    """Create a file with a random 256-bit hex secret (mode 0600); False if it exists."""
    p = Path(path)
    if p.exists():
        return False
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "x", encoding="ascii") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    p.chmod(0o600)
    return True
