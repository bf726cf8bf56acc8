"""The audit table of erasures (forget, purge-expired): what was removed, when, for whom.

Subjects are named by HMAC-SHA256 of their id, keyed with a per-group secret kept in the key
store (`<store>/audit_keys`), never in clear: whoever holds the key store can check whether a
given id was forgotten, nobody can read the ids from the audit table. A `started` record is
written before an erasure touches anything and a `completed` record after it, so an erasure
that crashed half-way shows up as started without completion.
"""

from __future__ import annotations

import getpass
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from strm_spark.crypto.masking import hmac_sha256_hex
from strm_spark.storage.sinks import write
from strm_spark.storage.tables import create_table
from strm_spark.storage.tables import read as read_table

AUDIT_SCHEMA = T.StructType(
    [
        T.StructField("auditId", T.StringType(), False),
        T.StructField("action", T.StringType(), False),
        T.StructField("status", T.StringType(), False),
        T.StructField("at", T.TimestampType(), False),
        T.StructField("job", T.StringType(), False),
        T.StructField("groupId", T.StringType(), False),
        T.StructField("operator", T.StringType(), True),
        T.StructField("subjects", T.LongType(), False),
        T.StructField("subjectHashes", T.ArrayType(T.StringType(), False), False),
        T.StructField("keysRemoved", T.LongType(), True),
        T.StructField("derivedRowsRemoved", T.LongType(), True),
        T.StructField("rejectedRowsRemoved", T.LongType(), True),
        T.StructField("subjectEntriesRemoved", T.LongType(), True),
        T.StructField("filesRewritten", T.LongType(), True),
        T.StructField("filesRemoved", T.LongType(), True),
        T.StructField("expiredBefore", T.TimestampType(), True),
        T.StructField("details", T.StringType(), True),
    ]
)

# No statistics on the subject hashes (they would stay in _delta_log).
_AUDIT_STATS = "auditId,action,status,at,job,groupId"


def subject_hashes(audit_key: bytes, subjects: Iterable[str]) -> list[str]:
    """The keyed hashes naming `subjects` in audit records, sorted (order reveals nothing)."""
    return sorted({hmac_sha256_hex(audit_key, s) for s in subjects})


@dataclass
class AuditRecord:
    """One row of the audit table; counts are None in a `started` record."""

    action: str
    status: str
    job: str
    group_id: str
    subject_hashes: list[str]
    audit_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    keys_removed: int | None = None
    derived_rows_removed: int | None = None
    rejected_rows_removed: int | None = None
    subject_entries_removed: int | None = None
    files_rewritten: int | None = None
    files_removed: int | None = None
    expired_before: datetime | None = None
    details: dict | None = None

    def row(self) -> tuple:
        return (
            self.audit_id,
            self.action,
            self.status,
            self.at,
            self.job,
            self.group_id,
            _operator(),
            len(self.subject_hashes),
            list(self.subject_hashes),
            self.keys_removed,
            self.derived_rows_removed,
            self.rejected_rows_removed,
            self.subject_entries_removed,
            self.files_rewritten,
            self.files_removed,
            self.expired_before,
            json.dumps(self.details, sort_keys=True) if self.details is not None else None,
        )


def _operator() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return None


def append(spark: SparkSession, path: str, record: AuditRecord) -> None:
    """Append one record to the audit table at `path` (created on first use)."""
    create_table(spark, path, AUDIT_SCHEMA, stats_columns=_AUDIT_STATS)
    write(spark.createDataFrame([record.row()], AUDIT_SCHEMA), path, "append")


def read(spark: SparkSession, path: str) -> DataFrame:
    return read_table(spark, path)
