"""Where a table or folder lives, decided once, when the config loads.

A `Location` is one of:
- `path`: a local path (relative ones resolve against the config file's folder);
- `uri`: `s3a://`, `gs://`, `abfss://`, `hdfs://`, `dbfs:/` and any other `scheme:` URI;
- `volume`: a Unity Catalog volume path (`/Volumes/catalog/schema/volume/...`);
- `table`: a table name, `catalog.schema.name` or `schema.name` (written `{table: ...}`);
- `schema`: a schema holding several tables, `catalog.schema` or `schema` (written
  `{schema: ...}`), for the key store and the table of runs.

A table name is only ever what the config wrote as `{table: ...}`: no path is taken for a name.
A `Location` is a `str` (its path, URI or name), so it prints and compares as the text it is,
and it knows what can be done with it: file modes, listing, one file written by this process.
This module is a leaf: plain Python, no Spark."""

from __future__ import annotations

import os
import re
from pathlib import Path

from strm_spark.errors import ConfigError

# The tables of a key store, `<store>/<name>` or `<schema>.<name>`.
KEY_STORE_TABLES = (
    "keys",
    "hash_keys",
    "audit_keys",
    "tombstones",
    "audit",
    "key_encryption_keys",
)
KINDS = ("path", "uri", "volume", "table", "schema")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]+:")  # two letters at least: not a drive letter
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Location(str):
    """A path, URI, volume path, table name or schema name, with its `kind`."""

    kind: str

    def __new__(cls, value: str, kind: str = "path") -> Location:
        if kind not in KINDS:
            raise ValueError(f"unknown location kind {kind!r}")
        self = super().__new__(cls, value)
        self.kind = kind
        return self

    def __repr__(self) -> str:
        return f"Location({str(self)!r}, {self.kind!r})"

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # pickles with its kind
        return (Location, (str(self), self.kind))

    @property
    def is_table(self) -> bool:
        return self.kind == "table"

    @property
    def is_files(self) -> bool:
        """Whether this is a folder or file of a file system (not a catalog name)."""
        return self.kind in ("path", "uri", "volume")

    @property
    def local(self) -> Path | None:
        """The local path whose file modes this process sets (owner-only), else None: object
        storage and volumes are guarded by their grants, tables by the catalog's."""
        return Path(self) if self.kind == "path" else None

    @property
    def file_path(self) -> Path | None:
        """The path through which this process reads and moves files itself (a local path, or
        a volume as Databricks mounts it), else None."""
        return Path(self) if self.kind in ("path", "volume") else None

    @property
    def sql(self) -> str:
        """The table in SQL: `delta.`<path>`` for files, the quoted name for a table."""
        if self.kind == "table":
            return ".".join(_quote(p) for p in self.split("."))
        if self.kind == "schema":
            raise ValueError(f"{self}: a schema is not a table")
        return "delta.`" + str(self).replace("`", "``") + "`"

    @property
    def schema(self) -> str | None:
        """A table's schema (`catalog.schema` or `schema`); a schema's own name."""
        if self.kind == "table":
            return self.rsplit(".", 1)[0]
        return str(self) if self.kind == "schema" else None

    def child(self, name: str) -> Location:
        """A table or folder inside this one: `<folder>/<name>`, or `<schema>.<name>`."""
        if self.kind == "schema":
            return Location(f"{self}.{name.lstrip('_')}", "table")
        if self.kind == "table":
            raise ValueError(f"{self}: a table holds no other table")
        return Location(f"{str(self).rstrip('/')}/{name}", self.kind)

    def beside(self, name: str) -> Location:
        """A folder next to this one: `<parent>/<name>`."""
        if not self.is_files:
            raise ValueError(f"{self}: a {self.kind} has no folder beside it")
        parent = str(self).rstrip("/").rsplit("/", 1)[0]
        return Location(f"{parent}/{name}", self.kind)

    def overlaps(self, other: Location | str) -> bool:
        """Whether one holds or is the other: the same table, a table in a schema, or nested
        folders. Names compare case-insensitively; a name without a catalog matches any."""
        other = other if isinstance(other, Location) else Location(other, "path")
        if self.is_files and other.is_files:
            return _contains(self, other) or _contains(other, self)
        if self.is_files or other.is_files:
            return False
        return _name_within(self, other) or _name_within(other, self)


def _quote(part: str) -> str:
    return "`" + part.replace("`", "``") + "`"


def _contains(outer: str, inner: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def _name_within(outer: Location, inner: Location) -> bool:
    """Whether `inner` is `outer` or a table of it (a schema), names without a catalog
    matching any catalog."""
    a, b = outer.lower().split("."), inner.lower().split(".")
    if outer.kind == "table" and inner.kind == "schema":
        return False
    if outer.kind == "schema" and inner.kind == "table":
        b = b[:-1]
    n = min(len(a), len(b))
    return a[-n:] == b[-n:] if n else False


def parse_name(value: str, kind: str, parts: tuple[int, ...]) -> Location | str:
    """A `table` or `schema` name, or the reason it does not parse."""
    names = value.split(".")
    if len(names) not in parts or not all(_IDENT.match(n) for n in names):
        want = (
            "catalog.schema.name or schema.name" if kind == "table" else "catalog.schema or schema"
        )
        return (
            f"not a {kind} name: expected {want}, each part letters, digits and '_' "
            "(not starting with a digit)"
        )
    return Location(value, kind)


def file_path(value: str) -> Path | None:
    """The path through which this process sees `value` as files: a Location's `file_path`;
    for a plain string, a path or `file:` URI as written (relative stays relative), and None
    for any other scheme (`s3a://`, `hdfs:/`, `dbfs:/`)."""
    if isinstance(value, Location):
        return value.file_path
    if value.startswith("file:"):
        rest = value[len("file:") :]
        return Path("/" + rest.lstrip("/")) if rest.startswith("/") else Path(rest)
    return None if _SCHEME.match(value) else Path(value)


def resolve_path(path: str, base_dir: Path) -> str:
    """A local file's path, made absolute relative to the config file's folder."""
    if path.startswith("file:"):
        path = path[len("file:") :]
        while path.startswith("//"):
            path = path[1:]
    return os.path.normpath(str((base_dir / os.path.expanduser(path)).resolve()))


def resolve_location(path: str, base_dir: Path) -> Location:
    """A written location (not a name): a URI as it is, a volume path, or a local path made
    absolute relative to the config file's folder."""
    if path.startswith("/Volumes/"):
        return Location(path.rstrip("/"), "volume")
    if _SCHEME.match(path) and not path.startswith("file:"):
        return Location(path.rstrip("/"), "uri")
    return Location(resolve_path(path, base_dir), "path")


def location_of(
    value: object, base_dir: Path, kinds: tuple[str, ...] = ("table",)
) -> Location | str:
    """A config value as a Location: a string is a path or URI; `{table: name}` (and, where
    `kinds` allows it, `{schema: name}`) a name. Returns the reason when it does not parse."""
    if isinstance(value, str):
        if not value.strip():
            return "expected a path, URI or {table: name}"
        return resolve_location(value, base_dir)
    if isinstance(value, dict) and len(value) == 1:
        ((kind, name),) = value.items()
        if kind in kinds and isinstance(name, str):
            return parse_name(name.strip(), kind, (2, 3) if kind == "table" else (1, 2))
    forms = " or ".join(f"{{{k}: name}}" for k in kinds)
    return f"expected a path, a URI or {forms}"


def check_locations(
    source: str,
    outputs: list[tuple[str, Location]],
    key_store: tuple[str, Location],
    source_path: Location,
    keys_apart: bool = True,
) -> None:
    """Each output owns its location, and the key store lives apart from data and source:
    not nested with a data output's folder, not one of its tables, and (`keys_apart`, the
    default) not in a data output's schema.

    `outputs` and `key_store` are (config field path, location) pairs."""
    ks_field, ks = key_store
    for i, (path_a, loc_a) in enumerate(outputs):
        for path_b, loc_b in outputs[i + 1 :]:
            if loc_a.overlaps(loc_b):
                what = "table" if loc_a.is_table else "location"
                raise ConfigError(
                    source,
                    path_b,
                    f"same or nested {what} as {path_a}: each output needs its own {what}",
                )
        if ks.kind == "schema" and loc_a.is_table and loc_a.schema:
            if Location(loc_a.schema, "schema").overlaps(ks) and (
                keys_apart or loc_a.rsplit(".", 1)[1].lower() in KEY_STORE_TABLES
            ):
                raise ConfigError(
                    source,
                    ks_field,
                    f"the key store's schema holds {path_a}: keep keys in a schema of their own "
                    "(its grants apart from the data's), or set keys.apart_from_data: false "
                    f"and name no output {', '.join(KEY_STORE_TABLES)}",
                )
        elif loc_a.overlaps(ks):
            raise ConfigError(
                source,
                ks_field,
                f"the key store must be kept apart from the data outputs; it overlaps {path_a}",
            )
    if source_path.is_files and ks.is_files and _contains(source_path, ks):
        raise ConfigError(source, ks_field, "the key store must not be inside the source location")
