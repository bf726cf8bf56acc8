"""The UDF jar's JVM functions (jvm/, `make udf`): each function's name, class and result type,
and their registration on a session (classic or Spark Connect) when the jar is on its class
path. strm-spark's local sessions add the jar; on a cluster pass it with --jars."""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import types as T

# Encryption and decryption: Tink Java's DeterministicAead (bundled in the jar), no Python
# worker, the same results as the Arrow UDFs. They also accept keysets in Tink's binary keyset
# format, which strm_keyset_compact_jvm makes of the JSON.
CRYPTO = {
    "strm_decrypt_jvm": ("io.strmspark.StrmDecrypt", T.StringType()),
    "strm_decrypt_strict_jvm": ("io.strmspark.StrmDecrypt$Strict", T.StringType()),
    "strm_encrypt_jvm": ("io.strmspark.StrmEncrypt", T.StringType()),
    "strm_keyset_compact_jvm": ("io.strmspark.StrmCompactKeyset", T.BinaryType()),
}
# Event times of patterns Spark cannot parse itself: java.time's DateTimeFormatter.
TIMESTAMPS = {
    "strm_parse_timestamp_jvm": ("io.strmspark.StrmParseTimestamp", T.LongType()),
}
FUNCTIONS = {**CRYPTO, **TIMESTAMPS}


def register(spark: SparkSession | None, functions: dict[str, tuple[str, T.DataType]]) -> bool:
    """Register `functions` (name -> (class, result type)) on `spark`; False when there is no
    session or the jar is not on its class path."""
    if spark is None:
        return False
    try:
        for name, (cls, returns) in functions.items():
            spark.udf.registerJavaFunction(name, cls, returns)
    except Exception:  # the class is not on the class path (the error's type depends on the
        return False  # session: py4j's on a classic one, a gRPC error over Connect)
    return True
