"""The locations of a job config: where its source, outputs, key store, table of runs and
audit table live, each a `Location` decided here, once, when the config loads."""

from __future__ import annotations

from pathlib import Path

from strm_spark.config.model import OUTPUT_FORMATS, OutputConfig
from strm_spark.document import Node
from strm_spark.errors import ConfigError
from strm_spark.storage.location import Location, _contains, location_of


def location(node: Node, base: Path, kinds: tuple[str, ...] = ("table",)) -> Location:
    """A location field: a path or URI, or `{table: name}` (`{schema: name}` where `kinds`
    allows it), checked to parse."""
    found = location_of(node.value, base, kinds)
    if not isinstance(found, Location):  # the reason it does not parse
        raise node.error(found)
    return found


def path_or_table(node: Node, base: Path) -> Location:
    """A mapping's location: its `path` (a path, URI or `{table: name}`) or its `table` key,
    exactly one of them."""
    if node.has("path") == node.has("table"):
        raise node.error("expected exactly one of path or table")
    if node.has("table"):
        return location(Node(node.source, {"table": node.child("table").value}, node.path), base)
    return location(node.child("path"), base)


def output(
    node: Node,
    base: Path,
    formats: tuple[str, ...] = OUTPUT_FORMATS,
    layout_columns: tuple[str, ...] = (),
) -> OutputConfig:
    """An output: a path, or {path, format, partition_by, cluster_by}; the layout options only
    where `layout_columns` (the columns a table may be laid out by) are given."""
    if isinstance(node.value, str) or (
        isinstance(node.value, dict) and set(node.value) == {"table"}
    ):
        return OutputConfig(location(node, base))
    keys = {"format"} | ({"partition_by", "cluster_by"} if layout_columns else set())
    node.mapping(keys | {"path", "table"})
    where = path_or_table(node, base)
    fmt = node.child("format", "delta").choice(formats)
    layout = {}
    for key in ("partition_by", "cluster_by"):
        if not node.has(key):
            continue
        child = node.child(key)
        names = (
            (child.string(),)
            if isinstance(child.value, str)
            else tuple(i.string() for i in child.items())
        )
        for name in names:
            if name not in layout_columns:
                raise child.error(
                    f"{name!r} is not a column this output can be laid out by; expected one of "
                    f"{', '.join(layout_columns)} (PII fields are never partition values)"
                )
        layout[key] = names
    if "partition_by" in layout and "cluster_by" in layout:
        raise node.error("set partition_by or cluster_by, not both")
    if "cluster_by" in layout and fmt != "delta":
        raise node.child("cluster_by").error("cluster_by (liquid clustering) needs a delta output")
    if layout and fmt == "strm-csv":
        raise node.error("a strm-csv output is one file: it takes no partition_by or cluster_by")
    if where.is_table and fmt != "delta":
        raise node.child("format").error("a table output is a Delta table: format delta")
    return OutputConfig(
        where,
        fmt,
        partition_by=layout.get("partition_by", ()),
        cluster_by=layout.get("cluster_by", ()),
    )


def summary_dir(onode: Node, encrypted: OutputConfig, base: Path) -> Location:
    """Where the table of runs (and of processed files) lives: `summary_dir` (a folder, or
    `{schema: name}`); by default `_runs` beside the encrypted folder, or the encrypted
    table's schema."""
    if onode.has("summary_dir"):
        return location(onode.child("summary_dir"), base, ("schema",))
    if encrypted.path.is_table:
        return Location(encrypted.path.schema or "", "schema")
    return encrypted.path.beside("_runs")


def audit(
    onode: Node, locations: list[tuple[str, Location]], key_store: Location, base: Path
) -> Location:
    """The audit table: inside the key store by default; elsewhere, apart from the data outputs."""
    if not onode.has("audit"):
        return key_store.child("audit")
    audit = location(onode.child("audit"), base)
    for path_a, loc_a in locations:
        if loc_a.overlaps(audit):
            raise ConfigError(
                onode.source,
                "outputs.audit",
                f"same or nested location as {path_a}: the audit table needs its own location",
            )
    if audit.is_files and key_store.is_files and _contains(audit, key_store):
        raise ConfigError(
            onode.source, "outputs.audit", "the audit table must not contain the key store"
        )
    return audit
