"""Writing an output: one sink per kind, chosen by the output's format.

- `delta` (the default): a Delta table by path or by name, created first (with privacy-safe
  properties, its layout, its folder owner-only where local), then appended or overwritten;
  Delta's idempotent-write options (`txn`) skip a write already committed.
- `parquet`, `csv`: folders of files (CSV cells flattened and formula-guarded), owner-only
  where local.
- other formats register their own sink (`register`): STRM's one-file CSV lives with the rest
  of STRM's compatibility in `strm_spark.compat.strm.outputs`.

Owner-only modes after a run are `tables.owner_only`'s; merges are `tables.merge`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import DataFrame

from strm_spark.errors import UsageError
from strm_spark.storage import modes
from strm_spark.storage.outputs import flatten_for_csv
from strm_spark.storage.tables import create_table, is_named

# A registered sink: (rows, location, charset, order_by) -> None.
Sink = Callable[[DataFrame, str, str, Sequence[str]], None]
_SINKS: dict[str, Sink] = {}


def register(fmt: str, sink: Sink) -> None:
    """Make `fmt` an output format written by `sink`."""
    _SINKS[fmt] = sink


def write(
    df: DataFrame,
    location: str,
    mode: str = "append",
    *,
    fmt: str = "delta",
    partition_by: Sequence[str] = (),
    cluster_by: Sequence[str] = (),
    stats_columns: Sequence[str] | str | None = None,
    txn: tuple[str, int] | None = None,
    formula_guard: bool = True,
    charset: str = "UTF-8",
    order_by: Sequence[str] = (),
) -> None:
    """Write `df` to `location` in `fmt`. A new Delta table is created first, so its
    properties and layout apply; an existing one keeps its own layout, and the write follows
    it. With `txn` (app id, version), Delta skips a write it already committed."""
    if fmt in _SINKS:
        _SINKS[fmt](df, location, charset, order_by)
    elif fmt == "delta":
        create_table(df.sparkSession, location, df.schema, partition_by, stats_columns, cluster_by)
        writer = df.write.format("delta").mode(mode)
        if txn is not None:
            writer = writer.option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
        _save(writer, location)
    elif fmt in ("parquet", "csv"):
        modes.prepare([location])
        rows = flatten_for_csv(df, formula_guard) if fmt == "csv" else df
        writer = rows.write.format(fmt).mode(mode)
        if fmt == "csv":
            writer = writer.option("header", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        _save(writer, location)
    else:
        raise UsageError(f"no sink writes the output format {fmt!r}")


def _save(writer, location: str) -> None:
    if is_named(location):
        writer.saveAsTable(str(location))
    else:
        writer.save(str(location))
