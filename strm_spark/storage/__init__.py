"""The storage layer: where each table lives (`location`: a path, URI, volume or table name,
decided when the config loads), and everything done with it: reading, creating, writing and
merging Delta tables by path or name through Spark's public API (SQL over temp views, the
DataFrame readers and writers: `tables`), writing every output format (`sinks`; other
packages may register one, as `compat.strm` does for STRM's one-file CSV), erasure (`erase`),
listing files (`listing`) and owner-only file modes (`modes`, called from here only). Other packages ask this layer; none of them reads, writes or chmods a location itself."""

from strm_spark.storage.location import Location
from strm_spark.storage.sinks import write
from strm_spark.storage.tables import (
    create_table,
    delta_properties,
    is_conflict,
    is_delta,
    merge,
    retry_on_conflict,
    sql_path,
    sql_string,
    temp_view,
)

__all__ = [
    "Location",
    "create_table",
    "delta_properties",
    "is_conflict",
    "is_delta",
    "merge",
    "retry_on_conflict",
    "sql_path",
    "sql_string",
    "temp_view",
    "write",
]
