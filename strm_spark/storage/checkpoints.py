"""A streaming query's checkpoint folder, as the storage layer sees it: whether one exists, and
the owner record strm-spark keeps in it (`strm-spark-owner`, one JSON row: the job's name and
the stream's id). Written and read with Spark's JSON reader and writer, so any file system a
checkpoint can live on (local, object storage, a volume) holds it."""

from __future__ import annotations

from pyspark.errors import AnalysisException
from pyspark.sql import Row, SparkSession

OWNER = "strm-spark-owner"
_OWNER_SCHEMA = "job string, stream string, createdAt string"


def exists(spark: SparkSession, path: str) -> bool:
    """Whether a file or folder exists at `path` (resolved by Spark's reader, no Spark job)."""
    try:
        return spark.read.format("text").load(path).schema is not None
    except AnalysisException:
        return False


def is_query_checkpoint(spark: SparkSession, checkpoint: str) -> bool:
    """Whether a streaming query has used the folder (Spark writes `metadata` at its start)."""
    return exists(spark, f"{checkpoint.rstrip('/')}/metadata")


def owner(spark: SparkSession, checkpoint: str) -> Row | None:
    """The owner record in the checkpoint, if any."""
    try:
        rows = spark.read.schema(_OWNER_SCHEMA).json(_owner_path(checkpoint)).collect()
    except AnalysisException:
        return None
    return rows[0] if rows else None


def has_owner(spark: SparkSession, checkpoint: str) -> bool:
    return exists(spark, _owner_path(checkpoint))


def record_owner(spark: SparkSession, checkpoint: str, job: str, stream: str, at: str) -> Row:
    """Record the owner unless one is recorded (of two first starts at once, the first write
    wins: `ignore` mode), and return the record that holds."""
    row = [(job, stream, at)]
    spark.createDataFrame(row, _OWNER_SCHEMA).coalesce(1).write.mode("ignore").json(
        _owner_path(checkpoint)
    )
    return owner(spark, checkpoint)


def _owner_path(checkpoint: str) -> str:
    return f"{checkpoint.rstrip('/')}/{OWNER}"
