"""Listing a source's data files as Spark's file sources see them (for incremental runs)."""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.errors import AnalysisException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from strm_spark.errors import DataError


@dataclass(frozen=True)
class SourceFile:
    path: str
    size: int
    modified_at: int


def list_files(spark: SparkSession, location: str) -> list[SourceFile]:
    """The data files of a file, folder (recursively) or glob, as Spark's file sources see them:
    names starting with `_` or `.` (markers, checksums, hidden files) are skipped. Listed by
    Spark's own file index (the `binaryFile` source, contents not read)."""
    try:
        listed = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .load(location)
            .select("path", "length", (F.unix_millis(F.col("modificationTime"))).alias("modified"))
            .collect()
        )
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc.getCondition() or exc):
            raise DataError(f"source {location} does not exist") from None
        raise
    return sorted(
        (SourceFile(r["path"], int(r["length"]), int(r["modified"])) for r in listed),
        key=lambda f: f.path,
    )
