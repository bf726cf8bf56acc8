"""Tombstones: erasure that sticks. A forget leaves one row per forgotten subject in
`<store>/tombstones`: the group, the subject named by the group's audit HMAC (never in clear)
and the time of the forget. A later run drops every row of a tombstoned subject whose event
time is before that forget (or unknown), so a re-delivered source file or a restored backup
does not bring the person back; events after the forget are new data.

The table grows with forget requests, not with the data: a run reads the group's rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark.storage import Location
from strm_spark.storage.tables import create_table, is_delta, merge
from strm_spark.storage.tables import read as read_table

TOMBSTONES_SCHEMA = T.StructType(
    [
        T.StructField("groupId", T.StringType(), False),
        T.StructField("subjectHash", T.StringType(), False),
        T.StructField("forgottenAt", T.TimestampType(), False),
    ]
)


def tombstones_path(store_location: Location) -> Location:
    return store_location.child("tombstones")


def add(
    spark: SparkSession,
    store_location: Location,
    group_id: str,
    hashes: Sequence[str],
    at: datetime,
) -> int:
    """A tombstone per subject hash, at `at`; a later forget of the same subject moves its
    time forward (events between the two forgets go too). Returns how many were written."""
    path = tombstones_path(store_location)
    create_table(spark, path, TOMBSTONES_SCHEMA, stats_columns="groupId,forgottenAt")
    if not hashes:
        return 0
    source = spark.createDataFrame(
        [(group_id, h, at) for h in sorted(set(hashes))], TOMBSTONES_SCHEMA
    )
    metrics = merge(
        source,
        path,
        "t.groupId = s.groupId AND t.subjectHash = s.subjectHash",
        "WHEN MATCHED AND s.forgottenAt > t.forgottenAt THEN UPDATE SET t.forgottenAt = s.forgottenAt "
        "WHEN NOT MATCHED THEN INSERT *",
        f"tombstones {path}",
    )
    if metrics is None:
        return len(set(hashes))
    return int(metrics["num_inserted_rows"] or 0) + int(metrics["num_updated_rows"] or 0)


def read(spark: SparkSession, store_location: Location, group_id: str) -> DataFrame | None:
    """The group's tombstones (subjectHash, forgottenAt), or None when there are none."""
    path = tombstones_path(store_location)
    if not is_delta(spark, path):
        return None
    found = (
        read_table(spark, path)
        .where(F.col("groupId") == F.lit(group_id))
        .select("subjectHash", "forgottenAt")
    )
    return found if found.limit(1).count() else None
