"""Files behind outputs: whether a path exists, its local path, and CSV cells (structs
flattened, formula cells guarded)."""

from __future__ import annotations

import logging

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark.storage.location import Location, file_path
from strm_spark.storage.tables import is_delta

log = logging.getLogger("strm_spark")


def path_exists(spark: SparkSession, uri: str) -> bool:
    """Whether a file or folder exists, as Spark's file index sees it (cloud URIs too, and over
    Spark Connect: the server's file system). Lists the folder; reads no file. A named table:
    whether the catalog has it."""
    if isinstance(uri, Location) and uri.is_table:
        return is_delta(spark, uri)
    try:
        spark.read.format("binaryFile").load(uri).schema  # noqa: B018 - analysis lists the path
    except AnalysisException as exc:
        if exc.getCondition() == "PATH_NOT_FOUND":
            return False
        raise
    return True


# The local path of a Location or a plain path string (STRM's one-file CSV moves files there).
local_path = file_path


# OWASP's CSV-injection rule: cells a spreadsheet would read as a formula.
FORMULA_START = "^[=+@\t\r-]"


def formula_guarded(value: Column) -> Column:
    """A text cell with a leading ' where it starts with = + - @ tab or CR."""
    return F.when(value.rlike(FORMULA_START), F.concat(F.lit("'"), value)).otherwise(value)


def flatten_for_csv(df: DataFrame, formula_guard: bool = False) -> DataFrame:
    """CSV holds no structs or arrays: `strmMeta.x` columns, arrays as JSON text like `[2]`;
    with `formula_guard`, text cells that would start a formula get a leading '."""
    flat = _flatten(df)
    if not formula_guard:
        return flat
    return flat.select(
        *[
            formula_guarded(F.col(f"`{f.name}`")).alias(f.name)
            if isinstance(f.dataType, T.StringType)
            else F.col(f"`{f.name}`")
            for f in flat.schema.fields
        ]
    )


def _flatten(df: DataFrame) -> DataFrame:
    cols = []
    for field in df.schema.fields:
        if isinstance(field.dataType, T.StructType):
            for sub in field.dataType.fields:
                c = F.col(f"`{field.name}`.`{sub.name}`")
                if isinstance(sub.dataType, (T.ArrayType, T.MapType, T.StructType)):
                    c = F.to_json(c)
                cols.append(c.alias(f"{field.name}.{sub.name}"))
        elif isinstance(field.dataType, (T.ArrayType, T.MapType)):
            cols.append(F.to_json(F.col(f"`{field.name}`")).alias(field.name))
        elif isinstance(field.dataType, T.BinaryType):
            cols.append(F.base64(F.col(f"`{field.name}`")).alias(field.name))
        else:
            cols.append(F.col(f"`{field.name}`"))
    return df.select(*cols)
