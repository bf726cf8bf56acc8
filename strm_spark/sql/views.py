"""Decrypt on the fly: decrypting views over the encrypted table and the key store.

Decrypted copies are toxic waste; a view applies a derived output's consent and purpose
rules at query time, so the plaintext is never written. Functions are vectorised (Arrow)
and build one Tink primitive per keyset per worker (bounded cache)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from strm_spark import consent as consent_rules
from strm_spark.config.model import JobConfig
from strm_spark.contract.model import Contract
from strm_spark.crypto.engines import compact_keyset_column, resolve_engine, with_decrypted_pii
from strm_spark.crypto.masking import masker_for
from strm_spark.errors import UsageError
from strm_spark.keys.store import KeyStore
from strm_spark.sql.functions import register
from strm_spark.storage.tables import read as read_table


def decrypting_view(
    encrypted: DataFrame,
    keys: DataFrame,
    contract: Contract,
    consent_type: str,
    levels: Sequence[int],
    masked_fields: Sequence[str] = (),
    masker: Callable[[Column], Column] | None = None,
    engine: str = "python",
) -> DataFrame:
    """The content of a derived output computed at query time from the encrypted table and
    the key store: rows whose consent passes and whose key still exists, allowed PII
    decrypted, masked fields hashed.
    `engine`: 'python' (Arrow UDF), 'jvm' (registered JVM functions) or 'auto'."""
    engine = resolve_engine(encrypted.sparkSession, engine)
    allowed = set(consent_rules.decrypted_fields(contract.pii_levels, consent_type, levels))
    keyset = compact_keyset_column(F.col("keyset")) if engine == "jvm" else F.col("keyset")
    ks = keys.select(F.col("keyLink").alias("__vk_link"), keyset.alias("__vk_keyset"))
    rows = (
        encrypted.where(
            consent_rules.allows_column(F.col("strmMeta.consentLevels"), consent_type, levels)
        )
        # Inner: a row whose key was destroyed (forget, purge-expired) is gone from the view,
        # as it is from the derived tables, not shown with its PII null.
        .join(ks, F.col("strmMeta.keyLink") == F.col("__vk_link"), "inner")
    )
    paths = [p for p in contract.pii_names if p in allowed]
    if masked_fields and masker is None:
        raise UsageError("masked fields need a masker")
    out = with_decrypted_pii(
        rows,
        contract,
        paths,
        F.col("__vk_keyset"),
        masked_fields=masked_fields,
        masker=masker,
        engine=engine,
    )
    return out.select(*contract.field_names, "strmMeta", "strmDay")


def register_job_views(
    spark: SparkSession, config: JobConfig, prefix: str = "", engine: str = "auto"
) -> list[str]:
    """A temporary view per derived output of a job (named after the output), decrypting at
    query time, plus `<prefix>encrypted`. Registers the SQL functions too. `engine`: 'auto'
    (the JVM functions when their jar is on the class path), 'python' or 'jvm'."""
    secret = config.masking_seed.resolve() if config.masking_seed else None
    register(spark, mask_seed=secret)
    encrypted = read_table(spark, config.encrypted.path)
    keys = KeyStore.for_job(spark, config).cleartext_keys()
    encrypted.createOrReplaceTempView(f"{prefix}encrypted")
    names = [f"{prefix}encrypted"]
    for d in config.derived:
        masker = masker_for(d.hash_type, d.inline_seed, secret) if d.masked_fields else None
        view = decrypting_view(
            encrypted,
            keys,
            config.contract,
            d.consent_type,
            d.consent_levels,
            d.masked_fields,
            masker,
            engine,
        )
        name = prefix + d.name.replace("-", "_")
        view.createOrReplaceTempView(name)
        names.append(name)
    return names
