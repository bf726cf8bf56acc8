"""The two encryption engines over DataFrame columns: Arrow (pandas) UDFs on tink-py, and the JVM
functions of strm-spark's UDF jar (the Maven module jvm/, `make udf`), which give the same cells."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
from pyspark.broadcast import Broadcast
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark import jvm
from strm_spark._pandas import is_null
from strm_spark.columns import KEYSET, col
from strm_spark.contract.model import Contract, field_col, split_path
from strm_spark.crypto import cells as crypto
from strm_spark.errors import CryptoError, UnsupportedError, UsageError


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
        if is_null(ct):
            out.append(None)
            continue
        if is_null(ks):
            if strict:
                raise CryptoError(
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
                raise CryptoError("strm_decrypt_strict: wrong key or tampered ciphertext") from None
            out.append(None)
    return pd.Series(out, dtype=object)


# The JVM implementations of strm_decrypt and of the job's encryption (strm_spark.jvm).
JVM_FUNCTIONS = jvm.CRYPTO


def register_jvm(spark: SparkSession) -> bool:
    """Register strm_decrypt_jvm, strm_decrypt_strict_jvm and strm_encrypt_jvm (a cell's
    ciphertext under a cleartext keyset), and strm_keyset_compact_jvm, when the UDF jar is on
    the class path (strm-spark's local sessions add it; on a cluster pass it with --jars);
    False if not."""
    return jvm.register(spark, JVM_FUNCTIONS)


def compact_keyset_column(keyset: Column) -> Column:
    """A cleartext keyset column (BINARY or STRING) in Tink's binary keyset format, which the JVM
    functions read without a JSON parser (about 140 bytes for one key instead of about 390).
    Apply it once per key, where keys are looked up, not per row; a keyset it cannot read is
    kept as it is."""
    return F.call_function("strm_keyset_compact_jvm", keyset.cast("binary"))


def resolve_engine(spark: SparkSession, engine: str) -> str:
    """'python' or 'jvm' for a wanted engine 'python', 'jvm', or 'auto' (the JVM functions when
    their jar is available); registers the JVM functions when they are used."""
    if engine not in ("auto", "python", "jvm"):
        raise UsageError(f"unknown engine {engine!r}; expected auto, python or jvm")
    if engine == "python":
        return engine
    if register_jvm(spark):
        return "jvm"
    if engine == "jvm":
        raise UnsupportedError(
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
            field_col(path), keyset, strict, engine
        )
    for path in masked_fields:
        leaves[path] = masker(leaves.get(path, field_col(path)))
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


def with_encrypted_columns(
    df: DataFrame,
    targets: dict[str, str],
    key_col: str = KEYSET,
    keysets: Broadcast | None = None,
    engine: str = "python",
) -> DataFrame:
    """Add, for each `source -> target`, the ciphertext of a string (or array of strings)
    column under the row's key.

    `engine="python"`: vectorised (Arrow batches), rows grouped by key, one Tink primitive
    per key per worker. `key_col` holds the row's keyset, or, with `keysets` (a broadcast key
    link -> keyset map), the row's key link: then only the value and a short key link cross
    to Python. `engine="jvm"`: the registered strm_encrypt_jvm function (see
    `register_jvm`) on the row's keyset in `key_col`, without leaving the JVM;
    the same ciphertext, since AES-SIV is deterministic."""
    if engine == "jvm":
        if keysets is not None:
            raise UsageError("the JVM encryption takes each row's keyset, not a broadcast map")

        def jvm(value: Column) -> Column:
            return F.call_function(
                "strm_encrypt_jvm", value.cast("string"), col(key_col).cast("binary")
            )

        out = df
        for source, target in targets.items():
            array = isinstance(df.schema[source].dataType, T.ArrayType)
            out = out.withColumn(
                target, F.transform(col(source), jvm) if array else jvm(col(source))
            )
        return out.drop(KEYSET) if key_col == KEYSET else out
    from strm_spark.crypto import cells as crypto

    def resolve(keys: pd.Series) -> list:
        if keysets is None:
            return [None if k is None else bytes(k) for k in keys]
        table = keysets.value
        return [table.get(k) for k in keys]

    @F.pandas_udf("string")
    def encrypt_text(values: pd.Series, keys: pd.Series) -> pd.Series:
        plain = [None if is_null(v) else v for v in values]
        return pd.Series(crypto.encrypt_columns(resolve(keys), [plain])[0], dtype=object)

    @F.pandas_udf(T.ArrayType(T.StringType()))
    def encrypt_lists(values: pd.Series, keys: pd.Series) -> pd.Series:
        cells = [None if v is None else list(v) for v in values]
        return pd.Series(_encrypt_lists(crypto, resolve(keys), cells), dtype=object)

    out = df
    for source, target in targets.items():
        fn = encrypt_lists if isinstance(df.schema[source].dataType, T.ArrayType) else encrypt_text
        out = out.withColumn(target, fn(col(source), col(key_col)))
    return out.drop(KEYSET) if key_col == KEYSET else out


def _encrypt_lists(crypto, keysets: list, values: list) -> list:
    """Encrypt every element of list cells (repeated PII) with the row's keyset."""
    flat_keys, flat_values = [], []
    for ks, cell in zip(keysets, values):
        for item in cell or ():
            flat_keys.append(ks)
            flat_values.append(item)
    flat = crypto.encrypt_columns(flat_keys, [flat_values])[0]
    out, pos = [], 0
    for cell in values:
        if cell is None:
            out.append(None)
            continue
        out.append(flat[pos : pos + len(cell)])
        pos += len(cell)
    return out
