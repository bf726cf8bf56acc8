"""Reading sources with the contract's schema, keeping every row (nothing is dropped)."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.errors import AnalysisException

from .config import SourceConfig
from .contract import Contract
from .errors import DataError

CORRUPT = "__corrupt"
FILE = "__file"
BLOCK = "__block"
ROW_ID = "__mid"

# Reader options strm-spark owns: changing them would silently drop or misread rows.
_FORCED = {"mode", "columnNameOfCorruptRecord", "enforceSchema"}


def _reader_options(source: SourceConfig) -> dict[str, str]:
    opts = {k: v for k, v in source.options}
    bad = _FORCED & set(opts)
    if bad:
        raise DataError(f"source option(s) {', '.join(sorted(bad))} are set by strm-spark and cannot be changed")
    return opts


def read_source(spark: SparkSession, source: SourceConfig, contract: Contract,
                paths: list[str] | None = None) -> DataFrame:
    """The source as a DataFrame of the contract's fields plus bookkeeping columns.

    CSV fields are read as text (typed later, so a bad value rejects one row, not the file);
    malformed records land in `__corrupt`. `__file`, `__block` and `__mid` locate each row.
    `paths` (an incremental run's batch) replaces `source.path`."""
    location = paths if paths is not None else source.path
    opts = _reader_options(source)
    if source.format == "csv":
        schema = T.StructType([T.StructField(n, T.StringType(), True) for n in contract.field_names])
        schema = schema.add(CORRUPT, T.StringType(), True)
        reader = (spark.read.format("csv").schema(schema)
                  # RFC 4180 by default: quotes inside quoted fields are doubled ("").
                  .option("header", "true").option("escape", '"').options(**opts)
                  .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
                  .option("enforceSchema", "false"))
        df = reader.load(location)
    elif source.format == "json":
        schema = contract.spark_schema().add(CORRUPT, T.StringType(), True)
        df = (spark.read.format("json").schema(schema).options(**opts)
              .option("mode", "PERMISSIVE").option("columnNameOfCorruptRecord", CORRUPT)
              .load(location))
    else:
        try:
            df = spark.read.format(source.format).options(**opts).load(location)
        except AnalysisException as exc:
            raise DataError(f"cannot read {source.format} source {source.path}: {exc.getCondition() or 'error'}") from None
        missing = [n for n in contract.field_names if n not in df.columns]
        if missing:
            raise DataError(
                f"source {source.path} lacks contract field(s): {', '.join(missing)}"
            )
        df = df.select(*[F.col(f"`{n}`") for n in contract.field_names]).withColumn(CORRUPT, F.lit(None).cast("string"))
    return df.select(
        "*",
        F.col("_metadata.file_path").alias(FILE),
        F.col("_metadata.file_block_start").alias(BLOCK),
        F.monotonically_increasing_id().alias(ROW_ID),
    )
