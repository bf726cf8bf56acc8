"""Delta tables through SQL and DataFrame writers: nothing here needs a JVM gateway, so it runs
on a classic session and over Spark Connect alike."""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, DataFrameReader, Row, SparkSession
from pyspark.sql import types as T

from strm_spark.errors import TableError
from strm_spark.storage import modes
from strm_spark.storage.location import Location, resolve_location

log = logging.getLogger("strm_spark")
R = TypeVar("R")

try:  # Delta's typed commit conflicts; importing them installs their conversion in pyspark
    from delta.exceptions.base import DeltaConcurrentModificationException as _DeltaConflict

    with contextlib.suppress(ImportError):
        import delta.exceptions
    with contextlib.suppress(ImportError):
        import delta.connect.exceptions  # noqa: F401  (Spark Connect sessions)
except ImportError:  # a runtime whose delta package predates them: error conditions only
    _DeltaConflict = ()  # type: ignore[assignment,misc]

# Error conditions of commits another writer won: Delta's conflicts, and a CREATE TABLE that
# lost a race to create the same table.
_CONFLICT_CONDITIONS = (
    "DELTA_CONCURRENT_",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
    "DELTA_TABLE_ALREADY_EXISTS",
    "TABLE_OR_VIEW_ALREADY_EXISTS",
)
# What Delta says while another process is between making a table's log folder and committing.
_CREATING_ELSEWHERE = (
    "DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION",
    "NON_EMPTY_LOCATION",
    "DELTA_TABLE_NOT_FOUND",
    "DELTA_MISSING_DELTA_TABLE",
)
_NOT_DELTA = ("DELTA_MISSING_DELTA_TABLE", "DELTA_TABLE_NOT_FOUND", "PATH_NOT_FOUND")
# One retry policy for every commit: attempts, and a growing, jittered pause between them.
ATTEMPTS = 10
_CREATE_ATTEMPTS = ATTEMPTS
_CONDITION = re.compile(r"\s*\[([A-Z0-9_.]+)\]")


def sql_path(path: str) -> str:
    """A table in SQL: a Location's own form (a quoted name, or `delta.`<path>``); a plain
    string is a path."""
    if isinstance(path, Location):
        return path.sql
    return "delta.`" + path.replace("`", "``") + "`"


def read(spark: SparkSession, location: str, fmt: str = "delta") -> DataFrame:
    """The rows of a table by name or path (`fmt`: its file format, for paths)."""
    if isinstance(location, Location) and location.is_table:
        return spark.read.table(str(location))
    reader = spark.read.format(fmt)
    if fmt == "csv":
        reader = reader.option("header", "true")
    return reader.load(str(location))


def read_with(reader: DataFrameReader, location: str | list[str] | None) -> DataFrame:
    """`reader` (its format and options set; `spark.read` or `spark.readStream`) on a table by
    name, on files, or, with no location, on what its options name (a Kafka topic)."""
    if location is None:
        return reader.load()
    if is_named(location):
        return reader.table(str(location))
    return reader.load(location if isinstance(location, list) else str(location))


def update(spark: SparkSession, location: str, assignments: str, condition: str) -> None:
    """`UPDATE <table> SET assignments WHERE condition`, by path or name. Keep values of people
    out of `condition`: Delta writes it into `commitInfo`."""
    spark.sql(f"UPDATE {sql_path(location)} SET {assignments} WHERE {condition}")


def read_version(spark: SparkSession, location: str, version: int) -> DataFrame:
    """A Delta table as of `version` (time travel), by name or path."""
    return spark.sql(f"SELECT * FROM {sql_path(location)} VERSION AS OF {int(version)}")


def is_named(location: str) -> bool:
    """Whether `location` is a table name (not files)."""
    return isinstance(location, Location) and location.is_table


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _sql_type(kind: T.DataType) -> str:
    if isinstance(kind, T.StructType):
        return (
            "STRUCT<"
            + ", ".join(f"{_quote(f.name)}: {_sql_type(f.dataType)}" for f in kind.fields)
            + ">"
        )
    if isinstance(kind, T.ArrayType):
        return f"ARRAY<{_sql_type(kind.elementType)}>"
    if isinstance(kind, T.MapType):
        return f"MAP<{_sql_type(kind.keyType)}, {_sql_type(kind.valueType)}>"
    return kind.simpleString().upper()


def columns_ddl(schema: T.StructType) -> str:
    """A schema as the column list of CREATE TABLE (top-level nullability kept)."""
    return ", ".join(
        f"{_quote(f.name)} {_sql_type(f.dataType)}{'' if f.nullable else ' NOT NULL'}"
        for f in schema.fields
    )


def sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def delta_properties(stats_columns: Sequence[str] | str | None) -> dict[str, str]:
    """Table properties that keep plaintext out of `_delta_log` statistics.

    Delta writes min/max values of indexed columns into the log, which VACUUM never
    removes; only the listed columns get statistics (none if the list is empty)."""
    props = {"delta.enableChangeDataFeed": "false"}
    if stats_columns is None:
        return props
    cols = (
        stats_columns
        if isinstance(stats_columns, str)
        else ",".join(f"`{c}`" if "." not in c else c for c in stats_columns)
    )
    if cols:
        props["delta.dataSkippingStatsColumns"] = cols
    else:
        props["delta.dataSkippingNumIndexedCols"] = "0"
    return props


def error_condition(exc: BaseException) -> str:
    """Spark's error condition of an exception (`DELTA_CONCURRENT_APPEND...`), classic or
    Connect; '' when it has none."""
    get = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    with contextlib.suppress(Exception):
        if callable(get) and get():
            return str(get())
    match = _CONDITION.match(str(exc)[:200])
    return match.group(1) if match else ""


def is_conflict(exc: BaseException) -> bool:
    """Whether a commit failed because another writer committed first (Delta's typed conflict
    exceptions, or their error conditions)."""
    return isinstance(exc, _DeltaConflict) or error_condition(exc).startswith(_CONFLICT_CONDITIONS)


def retry_on_conflict(
    action: Callable[[], R],
    what: str,
    retriable: Callable[[BaseException], bool] = is_conflict,
    attempts: int = ATTEMPTS,
) -> R:
    """Run a Delta commit, again while it fails with an error `retriable` accepts (by default a
    concurrent writer that committed first): `action` must re-read the table (a MERGE does), so
    the retry sees the winner's rows. The one retry loop of strm-spark."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts or not retriable(exc):
                raise
            log.info("%s: %s; retrying (%d/%d)", what, _why(exc), attempt, attempts - 1)
            time.sleep(random.uniform(0.2, 0.4) * attempt)
    raise AssertionError("unreachable")


def _why(exc: BaseException) -> str:
    if isinstance(exc, _NoTableYet):
        return "another writer is creating it"
    return "a concurrent commit won"


def is_delta(spark: SparkSession, path: str) -> bool:
    """Whether `path` holds a Delta table (a read of its log, no Spark job); for a name,
    whether the catalog has the table."""
    if is_named(path):
        return spark.catalog.tableExists(str(path))
    try:
        spark.read.format("delta").load(path).schema  # noqa: B018 - analysis reads the log
    except AnalysisException:
        return False
    except Exception as exc:  # Spark Connect may report analysis errors as its own types
        if error_condition(exc).startswith(_NOT_DELTA) or "not a Delta table" in str(exc)[:400]:
            return False
        raise
    return True


class _NoTableYet(TableError):
    """A Delta log folder without a commit: a creator between making it and committing."""


def create_table(
    spark: SparkSession,
    path: str,
    schema: T.StructType,
    partition_by: Sequence[str] = (),
    stats_columns: Sequence[str] | str | None = None,
    cluster_by: Sequence[str] = (),
) -> None:
    """Create an empty Delta table at `path` with our properties, if none exists yet; a table
    that exists keeps its layout. Another process may be creating the same table: its log folder
    exists but holds no commit yet, which Delta reports as a non-empty or non-Delta location, so
    this waits for the other commit."""
    if is_delta(spark, path):  # the common case: one read of the log, no CREATE statement
        return
    if is_named(path):
        _ensure_schema(spark, path)
    else:
        modes.prepare([path])  # 0700 before the first file
    props = ", ".join(
        f"{sql_string(k)} = {sql_string(v)}" for k, v in delta_properties(stats_columns).items()
    )
    layout = ""
    if partition_by:
        layout = f" PARTITIONED BY ({', '.join(_quote(c) for c in partition_by)})"
    elif cluster_by:
        layout = f" CLUSTER BY ({', '.join(_quote(c) for c in cluster_by)})"
    statement = (
        f"CREATE TABLE IF NOT EXISTS {sql_path(path)} ({columns_ddl(schema)}) USING delta"
        f"{layout} TBLPROPERTIES ({props})"
    )

    def create() -> None:
        try:
            spark.sql(statement)
        except Exception:
            if is_delta(spark, path):  # another writer created it meanwhile
                return
            raise
        # A log folder without a commit (a creator between making it and committing, or one
        # that died there) makes CREATE TABLE IF NOT EXISTS a silent no-op.
        if not is_delta(spark, path):
            raise _NoTableYet(path)
        if is_named(path):  # its folder owner-only before the first row is written
            modes.prepare(files_of(spark, [path]), create=False)

    def retriable(exc: BaseException) -> bool:
        return (
            isinstance(exc, _NoTableYet)
            or is_conflict(exc)
            or error_condition(exc).startswith(_CREATING_ELSEWHERE)
        )

    try:
        retry_on_conflict(create, f"create {path}", retriable, attempts=_CREATE_ATTEMPTS)
    except Exception as exc:
        half_made = isinstance(exc, _NoTableYet) or (
            error_condition(exc).startswith(_CREATING_ELSEWHERE) and not is_delta(spark, path)
        )
        if not half_made:
            raise
        raise TableError(
            f"{path}: a Delta log folder exists but no table appeared in it; another process "
            "may have died while creating it: if no job is running, remove the folder and rerun"
        ) from None


def _ensure_schema(spark: SparkSession, table: Location) -> None:
    """Create a named table's schema when the catalog lacks it (on Unity Catalog this needs
    the CREATE SCHEMA grant; an existing schema needs none)."""
    schema = table.schema or ""
    if not spark.catalog.databaseExists(schema):
        quoted = ".".join(_quote(p) for p in schema.split("."))
        with contextlib.suppress(AnalysisException):  # created meanwhile by another run
            spark.sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")


def _table_folder(spark: SparkSession, table: Location) -> Location | None:
    """Where the catalog keeps a named table's files (None while it does not exist): one
    catalog command, no Spark job."""
    try:
        rows = spark.sql(f"DESCRIBE TABLE EXTENDED {table.sql}").collect()
    except AnalysisException:
        return None
    where = next((r[1] for r in rows if r[0] == "Location"), None)
    return resolve_location(where, Path.cwd()) if where else None


def files_of(spark: SparkSession, locations: Sequence[str]) -> list[str]:
    """The folders and files behind `locations`: paths as they are, a named table's folder as
    the catalog says (tables not made yet left out)."""
    found = [_table_folder(spark, loc) if is_named(loc) else loc for loc in locations]
    return [f for f in found if f is not None]


@contextlib.contextmanager
def owner_only(spark: SparkSession, locations: Sequence[str]) -> Iterator[None]:
    """Existing local folders of `locations` owner-only before the body runs, and every file
    under them after it, also when it fails. A named table's folder is asked of the catalog
    once: before the body, or after it for a table the body created."""
    known = {loc: _table_folder(spark, loc) for loc in locations if is_named(loc)}
    before = [known[loc] if is_named(loc) else loc for loc in locations]
    modes.prepare([f for f in before if f is not None], create=False)
    try:
        yield
    finally:
        after = [
            known[loc] or _table_folder(spark, loc) if is_named(loc) else loc for loc in locations
        ]
        modes.seal([f for f in after if f is not None])


def seal(spark: SparkSession, locations: Sequence[str]) -> int:
    """Every local file under `locations` (named tables' folders too) 0600, folders 0700."""
    return modes.seal(files_of(spark, locations))


@contextlib.contextmanager
def temp_view(df: DataFrame, prefix: str = "strm_src") -> Iterator[str]:
    """`df` as a session temp view with a unique name, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    df.createOrReplaceTempView(name)
    try:
        yield name
    finally:
        df.sparkSession.catalog.dropTempView(name)


def merge(
    source: DataFrame, path: str, condition: str, clauses: str, what: str | None = None
) -> Row | None:
    """`MERGE INTO delta.`path` t USING <source> s ON condition <clauses>` as SQL over a temp
    view; returns Delta's metrics row (num_inserted_rows, num_deleted_rows, ...), retried when a
    concurrent writer committed first. Keep values of people out of `condition`: Delta writes it
    into `commitInfo`."""
    spark = source.sparkSession
    with temp_view(source) as view:
        statement = f"MERGE INTO {sql_path(path)} t USING {view} s ON {condition} {clauses}"
        return retry_on_conflict(lambda: spark.sql(statement).first(), what or f"merge into {path}")
