"""Stage 4, encrypt: one `Encryptor` interface over the two engines, which own how keys reach
the rows. Both take each row's keyset from the key map joined to it (no side channel), and give
the same ciphertext: AES-SIV is deterministic."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession

from strm_spark import columns as cols
from strm_spark.crypto import engines
from strm_spark.crypto.engines import compact_keyset_column, resolve_engine


@dataclass(frozen=True)
class Encryptor:
    """`jvm`: strm-spark's JVM function (the UDF jar), keysets carried in their compact form;
    `python`: Arrow UDFs on the Python workers, keysets as Tink JSON. `reason` says why."""

    engine: str
    reason: str

    @classmethod
    def for_session(cls, spark: SparkSession, wanted: str = "auto") -> Encryptor:
        engine = resolve_engine(spark, wanted)
        if wanted != "auto":
            return cls(engine, f"{engine} engine requested")
        return cls(
            engine,
            "JVM UDF on the class path"
            if engine == "jvm"
            else "JVM UDF not on the class path: Python engine",
        )

    def keyset_column(self, keyset: Column) -> Column:
        """The form a cleartext keyset takes in the key map (converted once per key)."""
        return compact_keyset_column(keyset) if self.engine == "jvm" else keyset

    def encrypt(self, df: DataFrame, targets: dict[str, str]) -> DataFrame:
        """`df` plus, for each `source -> target`, the ciphertext of `source` under the row's
        keyset (`__keyset`, dropped)."""
        if not targets:
            return df.drop(cols.KEYSET)
        return engines.with_encrypted_columns(df, targets, cols.KEYSET, None, engine=self.engine)
