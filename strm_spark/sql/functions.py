"""strm-spark's Spark SQL functions: strm_decrypt, strm_decrypt_strict, strm_mask,
strm_mask_murmur3, strm_consent_allows, and the JVM variants when the UDF jar is loaded."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from strm_spark import consent as consent_rules
from strm_spark._pandas import is_null
from strm_spark.crypto.engines import JVM_FUNCTIONS, _decrypt_series, register_jvm
from strm_spark.crypto.masking import hmac_sha256_hex, strm_murmur3_hex


def _consent_allows(levels: pd.Series, kind: pd.Series, wanted: pd.Series) -> pd.Series:
    out = []
    for have, k, want in zip(levels, kind, wanted):
        if have is None or is_null(k) or want is None:
            out.append(False)
            continue
        want_list = [int(w) for w in (want if not isinstance(want, (int, float)) else [want])]
        out.append(
            bool(want_list)
            and consent_rules.allows([int(h) for h in have], str(k).upper(), want_list)
        )
    return pd.Series(out, dtype=bool)


def register(spark: SparkSession, mask_seed: bytes | None = None) -> list[str]:
    """Register strm-spark's SQL functions on `spark`; returns their names.

    - strm_decrypt(ciphertext, keyset) -> plaintext, null when it cannot be decrypted
    - strm_decrypt_strict(ciphertext, keyset) -> plaintext, or an error (never the key)
    - strm_mask(value) -> HMAC-SHA256 with the secret `mask_seed` (only when given)
    - strm_mask_murmur3(value, seed) -> STRM's MurmurHash3 masking
    - strm_consent_allows(consentLevels, 'CUMULATIVE' | 'GRANULAR', level or array of levels)
    - strm_decrypt_jvm, strm_decrypt_strict_jvm: the decrypt functions in the JVM (faster; only
      when the UDF jar is on the class path, see `register_jvm`), strm_encrypt_jvm, and
      strm_keyset_compact_jvm(keyset) -> a JSON keyset in Tink's binary format (more compact),
      which the JVM functions accept too
    """
    names = list(JVM_FUNCTIONS) if register_jvm(spark) else []

    @F.pandas_udf("string")
    def strm_decrypt(ct: pd.Series, ks: pd.Series) -> pd.Series:
        return _decrypt_series(ct, ks, strict=False)

    @F.pandas_udf("string")
    def strm_decrypt_strict(ct: pd.Series, ks: pd.Series) -> pd.Series:
        return _decrypt_series(ct, ks, strict=True)

    @F.pandas_udf("string")
    def strm_mask_murmur3(values: pd.Series, seeds: pd.Series) -> pd.Series:
        return pd.Series(
            [
                None if is_null(v) else strm_murmur3_hex("" if is_null(s) else s, v)
                for v, s in zip(values, seeds)
            ],
            dtype=object,
        )

    @F.pandas_udf("boolean")
    def strm_consent_allows(levels: pd.Series, kind: pd.Series, wanted: pd.Series) -> pd.Series:
        return _consent_allows(levels, kind, wanted)

    for name, fn in (
        ("strm_decrypt", strm_decrypt),
        ("strm_decrypt_strict", strm_decrypt_strict),
        ("strm_mask_murmur3", strm_mask_murmur3),
        ("strm_consent_allows", strm_consent_allows),
    ):
        spark.udf.register(name, fn)
        names.append(name)
    if mask_seed:
        seed = bytes(mask_seed)

        @F.pandas_udf("string")
        def strm_mask(values: pd.Series) -> pd.Series:
            return pd.Series(
                [None if is_null(v) else hmac_sha256_hex(seed, v) for v in values], dtype=object
            )

        spark.udf.register("strm_mask", strm_mask)
        names.append("strm_mask")
    return names
