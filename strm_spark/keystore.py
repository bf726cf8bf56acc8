"""Moved to `strm_spark.keys`; kept so existing imports keep working."""

from .keys.store import HASH_KEYS_SCHEMA, KEYS_SCHEMA, KeyStore, expires_at  # noqa: F401
