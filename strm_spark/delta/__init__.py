"""Delta tables through Spark's public API only (SQL and DataFrame readers/writers): creating
tables with privacy-safe properties, MERGE as SQL over temp views, and conflict retries."""

from strm_spark.delta.tables import (
    create_table,
    delta_properties,
    is_conflict,
    is_delta,
    merge,
    retry_on_conflict,
    sql_path,
    sql_string,
    temp_view,
    write_table,
)

__all__ = [
    "create_table",
    "delta_properties",
    "is_conflict",
    "is_delta",
    "merge",
    "retry_on_conflict",
    "sql_path",
    "sql_string",
    "temp_view",
    "write_table",
]
