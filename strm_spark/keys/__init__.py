"""The key store: Tink keysets per (group, key-field value, UTC day), their group secrets, and
reads bounded to a batch's days."""

from strm_spark.keys.store import HASH_KEYS_SCHEMA, KEYS_SCHEMA, KeyStore, expires_at

__all__ = ["HASH_KEYS_SCHEMA", "KEYS_SCHEMA", "KeyStore", "expires_at"]
