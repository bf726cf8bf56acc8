"""Decrypt on the fly: Spark SQL functions and decrypting views over the encrypted table.

Decrypted copies are toxic waste; a view applies a derived output's consent and purpose
rules at query time, so the plaintext is never written. Functions are vectorised (Arrow)
and build one Tink primitive per keyset per worker (bounded cache).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark import consent as consent_rules
from strm_spark.config.load import JobConfig
from strm_spark.contract.parse import Contract, split_path
from strm_spark.crypto import cells as crypto
from strm_spark.crypto.envelope import load_master_key
from strm_spark.crypto.masking import hmac_sha256_hex, masker_for, strm_murmur3_hex
from strm_spark.errors import ReadOnlyError
from strm_spark.keys.store import KeyStore


def _is_null(value: object) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _as_bytes(keyset: object) -> bytes:
    return keyset.encode("utf-8") if isinstance(keyset, str) else bytes(keyset)


def _decrypt_series(ciphertexts: pd.Series, keysets: pd.Series, strict: bool) -> pd.Series:
    out = []
    # Rows come grouped by key link and the key field repeats within a key's rows: the same
    # (keyset, ciphertext) gives the same plaintext (AES-SIV is deterministic), so the last
    # result is reused, as in the JVM function.
    last: tuple[object, object, str] | None = None
    for ct, ks in zip(ciphertexts, keysets):
        if last is not None and ct == last[0] and ks == last[1]:
            out.append(last[2])
            continue
        if _is_null(ct):
            out.append(None)
            continue
        if _is_null(ks):
            if strict:
                raise ValueError(
                    "strm_decrypt_strict: no keyset for a ciphertext (unknown or forgotten key link)"
                )
            out.append(None)
            continue
        try:
            plain = crypto.decrypt_text(crypto.primitive(_as_bytes(ks)), ct)
            out.append(plain)
            last = (ct, ks, plain)
        except ValueError:
            if strict:
                raise ValueError("strm_decrypt_strict: wrong key or tampered ciphertext") from None
            out.append(None)
    return pd.Series(out, dtype=object)


# The JVM implementations of strm_decrypt and of the job's encryption (jvm/io/strmspark/,
# `make udf`): Tink's AES-SIV from Spark's own jars, no Python worker, the same results as
# the Arrow UDFs. They also accept keysets in the compact form strm_keyset_compact_jvm makes,
# which is what the views and the job carry with their rows.
JVM_FUNCTIONS = {
    "strm_decrypt_jvm": ("io.strmspark.StrmDecrypt", T.StringType()),
    "strm_decrypt_strict_jvm": ("io.strmspark.StrmDecrypt$Strict", T.StringType()),
    "strm_encrypt_jvm": ("io.strmspark.StrmEncrypt", T.StringType()),
    "strm_keyset_compact_jvm": ("io.strmspark.StrmCompactKeyset", T.BinaryType()),
}


def register_jvm(spark: SparkSession) -> bool:
    """Register strm_decrypt_jvm, strm_decrypt_strict_jvm and strm_encrypt_jvm (a cell's
    ciphertext under a cleartext keyset), and strm_keyset_compact_jvm, when the UDF jar is on
    the class path (strm-spark's local sessions add it; on a cluster pass it with --jars);
    False if not."""
    try:
        for name, (cls, returns) in JVM_FUNCTIONS.items():
            spark.udf.registerJavaFunction(name, cls, returns)
    except Exception:  # the class is not on the class path
        return False
    return True


def compact_keyset_column(keyset: Column) -> Column:
    """A cleartext keyset column (BINARY or STRING) in the compact form the JVM functions read
    without parsing JSON (about 70 bytes per key instead of about 390). Apply it once per key,
    where keys are looked up, not per row; a keyset it cannot read is kept as it is."""
    return F.call_function("strm_keyset_compact_jvm", keyset.cast("binary"))


def resolve_engine(spark: SparkSession, engine: str) -> str:
    """'python' or 'jvm' for a wanted engine 'python', 'jvm', or 'auto' (the JVM functions when
    their jar is available); registers the JVM functions when they are used."""
    if engine not in ("auto", "python", "jvm"):
        raise ValueError(f"unknown engine {engine!r}; expected auto, python or jvm")
    if engine == "python":
        return engine
    if register_jvm(spark):
        return "jvm"
    if engine == "jvm":
        raise ValueError(
            "the JVM functions are not on the class path; run `make udf` "
            "(or pass strm-spark-udf.jar with --jars)"
        )
    return "python"


def decrypt_column(
    ciphertext: Column, keyset: Column, strict: bool = False, engine: str = "python"
) -> Column:
    """Plaintext of a base64 Tink ciphertext under a Tink JSON keyset (BINARY or STRING).
    Null in, null out; a wrong key, tampered ciphertext or missing keyset gives null, or an
    error without details when `strict`. `engine="jvm"` uses the registered JVM functions
    (see `register_jvm`)."""
    if engine == "jvm":
        name = "strm_decrypt_strict_jvm" if strict else "strm_decrypt_jvm"
        return F.call_function(name, ciphertext.cast("string"), keyset.cast("binary"))
    fn = F.pandas_udf(lambda c, k: _decrypt_series(c, k, strict), "string")
    return fn(ciphertext.cast("string"), keyset)


def decrypt_array_column(
    ciphertexts: Column, keyset: Column, strict: bool = False, engine: str = "python"
) -> Column:
    """`decrypt_column` for repeated PII fields: each element decrypted."""
    if engine == "jvm":
        return F.transform(ciphertexts, lambda item: decrypt_column(item, keyset, strict, engine))

    def _decrypt(cells: pd.Series, keysets: pd.Series) -> pd.Series:
        out = []
        for cell, ks in zip(cells, keysets):
            if cell is None:
                out.append(None)
                continue
            items = list(cell)
            out.append(
                list(
                    _decrypt_series(
                        pd.Series(items, dtype=object),
                        pd.Series([ks] * len(items), dtype=object),
                        strict,
                    )
                )
            )
        return pd.Series(out, dtype=object)

    return F.pandas_udf(_decrypt, T.ArrayType(T.StringType()))(ciphertexts, keyset)


def _consent_allows(levels: pd.Series, kind: pd.Series, wanted: pd.Series) -> pd.Series:
    out = []
    for have, k, want in zip(levels, kind, wanted):
        if have is None or _is_null(k) or want is None:
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
      strm_keyset_compact_jvm(keyset) -> the compact form of a keyset the JVM functions accept
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
                None if _is_null(v) else strm_murmur3_hex("" if _is_null(s) else s, v)
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
                [None if _is_null(v) else hmac_sha256_hex(seed, v) for v in values], dtype=object
            )

        spark.udf.register("strm_mask", strm_mask)
        names.append("strm_mask")
    return names


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
        raise ValueError("masked fields need a masker")
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


def with_decrypted_pii(
    rows: DataFrame,
    contract: Contract,
    paths: Sequence[str],
    keyset: Column,
    strict: bool = False,
    masked_fields: Sequence[str] = (),
    masker: Callable[[Column], Column] | None = None,
    engine: str = "python",
) -> DataFrame:
    """`rows` with the PII fields at `paths` (top-level, nested or repeated) decrypted with the
    cleartext `keyset` column, and `masked_fields` hashed with `masker`; other columns kept."""
    leaves: dict[str, Column] = {}
    for path in paths:
        node = contract.node(path)
        leaves[path] = (decrypt_array_column if node.repeated else decrypt_column)(
            _field(path), keyset, strict, engine
        )
    for path in masked_fields:
        leaves[path] = masker(leaves.get(path, _field(path)))
    cols = []
    for name in rows.columns:
        if name in leaves:
            cols.append(leaves[name].alias(name))
            continue
        value = F.col(f"`{name}`")
        nested = [(split_path(path), leaf) for path, leaf in leaves.items()]
        nested = [(parts, leaf) for parts, leaf in nested if len(parts) > 1 and parts[0] == name]
        for parts, leaf in nested:
            value = value.withField(".".join(parts[1:]), leaf)
        cols.append(value.alias(name) if nested else value)
    return rows.select(*cols)


def _field(path: str) -> Column:
    return F.col(".".join(f"`{p}`" for p in split_path(path)))


def register_job_views(
    spark: SparkSession, config: JobConfig, prefix: str = "", engine: str = "auto"
) -> list[str]:
    """A temporary view per derived output of a job (named after the output), decrypting at
    query time, plus `<prefix>encrypted`. Registers the SQL functions too. `engine`: 'auto'
    (the JVM functions when their jar is on the class path), 'python' or 'jvm'."""
    secret = config.masking_seed.resolve() if config.masking_seed else None
    register(spark, mask_seed=secret)
    encrypted = spark.read.format("delta").load(config.encrypted.path)
    master = load_master_key(config.master_key) if config.master_key else None
    keys = KeyStore(spark, config.key_store, master).cleartext_keys()
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


# Statements `strm-spark sql` runs without --allow-writes: queries and metadata reads.
READ_ONLY_STATEMENTS = (
    "SELECT",
    "WITH",
    "FROM",
    "VALUES",
    "TABLE",
    "SHOW",
    "DESCRIBE",
    "DESC",
    "EXPLAIN",
)
_LEADING_NOISE = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/|\()*", re.S)


def check_read_only(spark: SparkSession, statement: str) -> None:
    """Refuse a statement that could write or change anything (INSERT, CREATE, MERGE, SET, ...,
    also a query whose CTE or FROM clause ends in an INSERT): decrypted PII must not leave
    through a write outside forget and audit. Checks the leading keyword and Spark's parsed plan
    (EXPLAIN executes nothing); the error never shows the statement's text."""
    keyword = re.match(r"[A-Za-z]*", _LEADING_NOISE.sub("", statement, count=1)).group(0).upper()
    if (
        keyword not in READ_ONLY_STATEMENTS
    ):  # the statement's first word is not echoed: it may be anything
        raise ReadOnlyError(
            "strm-spark sql is read-only: only queries, SHOW, DESCRIBE and EXPLAIN run; "
            "pass --allow-writes to run statements that write or change anything"
        )
    if keyword != "EXPLAIN":
        plan = spark.sql(f"EXPLAIN EXTENDED {statement}").first()[0]
        parsed = plan.split("== Analyzed Logical Plan ==")[0]
        if "InsertInto" in parsed:
            raise ReadOnlyError(
                "strm-spark sql is read-only: this query writes (an INSERT in its plan); "
                "pass --allow-writes to run statements that write or change anything"
            )
