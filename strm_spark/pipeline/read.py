"""Stage 1, read: the source with the contract's schema, every row kept (nothing is dropped),
and Spark's read errors we know translated into errors naming the file."""

from __future__ import annotations

import re

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark.columns import BLOCK, CORRUPT, FILE, KAFKA_MS, ROW_ID
from strm_spark.config.model import KafkaSource, SourceConfig
from strm_spark.contract.model import Contract
from strm_spark.errors import DataError
from strm_spark.storage.tables import read_with


def _reader_options(source: SourceConfig) -> dict[str, str]:
    """The config's reader options (those strm-spark sets itself are refused when it loads)."""
    return {k: v for k, v in source.options}


def _reader(reader, source: SourceConfig, contract: Contract):
    """The source's reader (`spark.read`, or `spark.readStream` for a stream), its format and
    options set: CSV fields as text (typed later, so a bad value rejects one row, not the
    file) and malformed records kept in `__corrupt`."""
    opts = _reader_options(source)
    if source.format == "csv":
        schema = T.StructType(
            [T.StructField(n, T.StringType(), True) for n in contract.field_names]
        )
        schema = schema.add(CORRUPT, T.StringType(), True)
        return (
            reader.format("csv")
            .schema(schema)
            # RFC 4180 by default: quotes inside quoted fields are doubled ("").
            .option("header", "true")
            .option("escape", '"')
            .options(**opts)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .option("enforceSchema", "false")
        )
    if source.format == "json":
        return (
            reader.format("json")
            .schema(contract.spark_schema().add(CORRUPT, T.StringType(), True))
            .options(**opts)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
        )
    return reader.format(source.format).options(**opts)


def contract_fields(df: DataFrame, source: SourceConfig, contract: Contract) -> DataFrame:
    """A typed source's (Parquet, Delta) contract fields, and no corrupt records."""
    missing = [n for n in contract.field_names if n not in df.columns]
    if missing:
        raise DataError(f"source {source.path} lacks contract field(s): {', '.join(missing)}")
    return df.select(*[F.col(f"`{n}`") for n in contract.field_names]).withColumn(
        CORRUPT, F.lit(None).cast("string")
    )


def _located(df: DataFrame) -> DataFrame:
    """`__file` and `__block`: the file and split each row comes from."""
    return df.select(
        "*",
        F.col("_metadata.file_path").alias(FILE),
        F.col("_metadata.file_block_start").alias(BLOCK),
    )


def with_row_ids(df: DataFrame) -> DataFrame:
    """`__mid`: ids consecutive within each file split (a split is read in order by one task),
    from which rejected rows get their row numbers. Not on a streaming DataFrame: a stream's
    micro-batch gets them in `foreachBatch`."""
    return df.withColumn(ROW_ID, F.monotonically_increasing_id())


def read_source(
    spark: SparkSession, source: SourceConfig, contract: Contract, paths: list[str] | None = None
) -> DataFrame:
    """The source as a DataFrame of the contract's fields plus bookkeeping columns.

    Malformed records land in `__corrupt`; `__file`, `__block` and `__mid` locate each row.
    `paths` (an incremental run's batch) replaces `source.path`."""
    if source.kafka is not None:  # a batch over the topic: what it holds now
        records = read_with(_kafka_reader(spark.read, source), None)
        return kafka_rows(records, source.kafka, contract, source.delimiter)
    location = paths if paths is not None else source.path
    reader = _reader(spark.read, source, contract)
    if source.format in ("csv", "json"):
        return with_row_ids(_located(read_with(reader, location)))
    try:
        df = read_with(reader, location)
    except AnalysisException as exc:
        raise DataError(
            f"cannot read {source.format} source {source.path}: {exc.getCondition() or 'error'}"
        ) from None
    return with_row_ids(_located(contract_fields(df, source, contract)))


def _kafka_reader(reader, source: SourceConfig):
    """A Kafka reader of the topic, from its earliest offsets unless the options say otherwise
    (a privacy pipeline loses no record by default)."""
    kafka = source.kafka
    opts = {"startingOffsets": "earliest", **_reader_options(source)}
    return (
        reader.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", kafka.topic)
        .options(**opts)
    )


def kafka_rows(
    records: DataFrame, kafka: KafkaSource, contract: Contract, delimiter: str = ","
) -> DataFrame:
    """Kafka records (key, value, topic, partition, offset, timestamp) as `read_source`'s rows:
    the value parsed as JSON or CSV per the contract, a value that does not parse kept whole in
    `__corrupt` (a rejected row). `__file` is `kafka:<topic>:<partition>` and `__mid` the offset;
    `__kafka_ms` the record's timestamp where it stands in for a missing timestamp field."""
    text = F.col("value").cast("string")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
    if kafka.value_format == "csv":
        schema = T.StructType(
            [T.StructField(n, T.StringType(), True) for n in contract.field_names]
        ).add(CORRUPT, T.StringType(), True)
        csv = {**options, "escape": '"', "sep": delimiter}
        parsed = F.from_csv(text, schema.simpleString(), csv)
    else:
        schema = contract.spark_schema().add(CORRUPT, T.StringType(), True)
        parsed = F.from_json(text, schema, options)
    rows = records.select(
        parsed.alias("__v"),
        F.concat_ws(":", F.lit("kafka"), "topic", F.col("partition").cast("string")).alias(FILE),
        F.lit(0).cast("long").alias(BLOCK),
        F.col("offset").alias(ROW_ID),
        F.col("timestamp").alias("__kafka_ts"),
        text.alias("__text"),
    )
    fields = [F.col(f"__v.`{n}`").alias(n) for n in contract.field_names]
    # A value that is no record at all (null, or not an object) is corrupt too.
    corrupt = F.when(F.col("__v").isNull(), F.coalesce("__text", F.lit(""))).otherwise(
        F.col(f"__v.{CORRUPT}")
    )
    extra = [F.unix_millis("__kafka_ts").alias(KAFKA_MS)] if kafka.timestamp_fallback else []
    return rows.select(*fields, corrupt.alias(CORRUPT), FILE, BLOCK, ROW_ID, *extra)


def stream_source(
    spark: SparkSession, source: SourceConfig, contract: Contract, max_files: int | None
) -> DataFrame:
    """The source as a streaming DataFrame: files (read by the batch reader's rules, located
    like `read_source`'s rows but without `__mid`), a Kafka topic's records, or a Delta table
    (append-only)."""
    if source.kafka is not None:
        return read_with(_kafka_reader(spark.readStream, source), None)
    if source.format == "delta" or source.path.is_table:
        reader = spark.readStream.format("delta").options(**_reader_options(source))
        return read_with(reader, source.path)
    reader = _reader(spark.readStream, source, contract)
    if max_files:
        reader = reader.option("maxFilesPerTrigger", str(max_files))
    if source.format in ("csv", "json"):
        return _located(read_with(reader, source.path))
    # A stream of Parquet files needs its schema before the first file: that of the files there
    # now, else the contract's (columns are matched by name).
    try:
        schema = read_with(spark.read.format(source.format), source.path).schema
    except AnalysisException:
        schema = contract.spark_schema()
    df = read_with(reader.schema(schema), source.path)
    return _located(contract_fields(df, source, contract))


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
