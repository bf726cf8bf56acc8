"""Keyed hashes as vectorised Spark functions: HMAC-SHA256 for masking and key-store lookups.

The secret travels inside the pickled function to the workers; it never appears as a literal
in a query plan (plans are shown in logs and the Spark UI).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F


def hmac_sha256_hex(secret: bytes, value: str) -> str:
    return hmac.new(secret, value.encode("utf-8"), hashlib.sha256).hexdigest()


def hmac_column(col: Column, secret: bytes, null_as: str | None = None) -> Column:
    """HMAC-SHA256 (hex) of a string column. Nulls stay null, or hash as `null_as` if given."""

    def _hash(values: pd.Series) -> pd.Series:
        key = secret
        out = []
        for v in values:
            if v is None or (isinstance(v, float) and pd.isna(v)):
                v = null_as
            out.append(None if v is None else hmac.new(key, v.encode("utf-8"), hashlib.sha256).hexdigest())
        return pd.Series(out, dtype=object)

    udf = F.pandas_udf(_hash, "string")
    return udf(col.cast("string"))


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
