"""Stage 1, read: the source with the contract's schema, every row kept (nothing is dropped),
and Spark's read errors we know translated into errors naming the file."""

from __future__ import annotations

import re

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark.columns import BLOCK, CORRUPT, FILE, ROW_ID
from strm_spark.config.model import SourceConfig
from strm_spark.contract.model import Contract
from strm_spark.errors import DataError
from strm_spark.storage.tables import read_with


def _reader_options(source: SourceConfig) -> dict[str, str]:
    """The config's reader options (those strm-spark sets itself are refused when it loads)."""
    return {k: v for k, v in source.options}


def read_source(
    spark: SparkSession, source: SourceConfig, contract: Contract, paths: list[str] | None = None
) -> DataFrame:
    """The source as a DataFrame of the contract's fields plus bookkeeping columns.

    CSV fields are read as text (typed later, so a bad value rejects one row, not the file);
    malformed records land in `__corrupt`. `__file`, `__block` and `__mid` locate each row.
    `paths` (an incremental run's batch) replaces `source.path`."""
    location = paths if paths is not None else source.path
    opts = _reader_options(source)
    if source.format == "csv":
        schema = T.StructType(
            [T.StructField(n, T.StringType(), True) for n in contract.field_names]
        )
        schema = schema.add(CORRUPT, T.StringType(), True)
        reader = (
            spark.read.format("csv")
            .schema(schema)
            # RFC 4180 by default: quotes inside quoted fields are doubled ("").
            .option("header", "true")
            .option("escape", '"')
            .options(**opts)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .option("enforceSchema", "false")
        )
        df = read_with(reader, location)
    elif source.format == "json":
        schema = contract.spark_schema().add(CORRUPT, T.StringType(), True)
        df = read_with(
            spark.read.format("json")
            .schema(schema)
            .options(**opts)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT),
            location,
        )
    else:
        try:
            df = read_with(spark.read.format(source.format).options(**opts), location)
        except AnalysisException as exc:
            raise DataError(
                f"cannot read {source.format} source {source.path}: {exc.getCondition() or 'error'}"
            ) from None
        missing = [n for n in contract.field_names if n not in df.columns]
        if missing:
            raise DataError(f"source {source.path} lacks contract field(s): {', '.join(missing)}")
        df = df.select(*[F.col(f"`{n}`") for n in contract.field_names]).withColumn(
            CORRUPT, F.lit(None).cast("string")
        )
    return df.select(
        "*",
        F.col("_metadata.file_path").alias(FILE),
        F.col("_metadata.file_block_start").alias(BLOCK),
        F.monotonically_increasing_id().alias(ROW_ID),
    )


_HEADER = re.compile(
    r"CSV header does not conform to the schema\.\s*Header: (?P<header>.*?)\s*Schema: "
    r"(?P<schema>.*?)\s*Expected: (?P<expected>.*?) but found: (?P<found>.*?)\s*CSV file: (?P<file>\S+)",
    re.S,
)
_HEADER_LENGTH = re.compile(
    r"Number of column in CSV header is not equal to number of fields in the schema:"
    r"\s*Header length: (?P<header>\d+), schema size: (?P<schema>\d+)\s*CSV file: (?P<file>\S+)"
)


def as_data_error(exc: Exception) -> DataError | None:
    """Translate Spark read failures we know into a clear DataError naming the file."""
    m = _HEADER.search(str(exc))
    if m:
        # The "header" may be a data row (a file without its header line): columns are named
        # by position and count, and only the contract's own field names are quoted.
        found, fields = m["header"].split(", "), m["schema"].split(", ")
        at = next((i for i, (f, g) in enumerate(zip(found, fields)) if f != g), 0)
        return DataError(
            f"{m['file']}: the CSV header does not match the contract's fields: column "
            f"{at + 1} of {len(found)} is not {fields[at]!r} (is the header line missing?); "
            "fix the file or the contract"
        )
    m = _HEADER_LENGTH.search(str(exc))
    if m:
        return DataError(
            f"{m['file']}: the CSV header has {m['header']} columns but the contract has "
            f"{m['schema']} fields; fix the file or the contract"
        )
    return None
