"""The contract model: schema nodes, PII fields with purpose levels, the key and data subject
fields, validations, and the one resolver of field paths (`customer/id`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark.errors import FieldNotFound

SIMPLE_TYPES: dict[str, T.DataType] = {
    "STRING": T.StringType(),
    "BOOLEAN": T.BooleanType(),
    "FLOAT": T.DoubleType(),
    "INTEGER": T.IntegerType(),
    "LONG": T.LongType(),
}


# Column names strm-spark adds to every output; a contract may not use them.
RESERVED_NAMES = frozenset({"strmMeta", "strmDay"})


_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-. ]*$")


@dataclass(frozen=True)
class SchemaNode:
    """One Simple Schema node: a scalar field, or a NODE with child nodes."""

    name: str
    type: str
    required: bool = False
    repeated: bool = False
    nodes: tuple[SchemaNode, ...] = ()

    def spark_type(self) -> T.DataType:
        if self.type == "NODE":
            inner: T.DataType = T.StructType(
                [T.StructField(n.name, n.spark_type(), True) for n in self.nodes]
            )
        else:
            inner = SIMPLE_TYPES[self.type]
        return T.ArrayType(inner, True) if self.repeated else inner


@dataclass(frozen=True)
class Validation:
    """A regex rule: a present value of `field` must fully match `pattern`."""

    field: str
    pattern: str
    type: str = "regex"


@dataclass(frozen=True)
class Contract:
    """The data contract of a job (schema plus privacy metadata)."""

    schema_name: str
    nodes: tuple[SchemaNode, ...]
    key_field: str
    pii_fields: tuple[tuple[str, int], ...]
    data_subject_field: str | None = None
    validations: tuple[Validation, ...] = ()
    source: str = field(default="<inline>", compare=False)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    @property
    def pii_levels(self) -> dict[str, int]:
        return dict(self.pii_fields)

    @property
    def pii_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.pii_fields)

    def node(self, path: str) -> SchemaNode:
        """The schema node at a field path (`customer/id` for nested fields)."""
        return resolve_path(self.nodes, path)

    def spark_schema(self) -> T.StructType:
        return T.StructType([T.StructField(n.name, n.spark_type(), True) for n in self.nodes])

    @property
    def sensitive_columns(self) -> tuple[str, ...]:
        """Top-level columns that can hold plaintext personal data (PII fields, or structs with
        PII inside, and the data subject field); never indexed in Delta statistics."""
        paths = list(self.pii_names) + (
            [self.data_subject_field] if self.data_subject_field else []
        )
        cols: list[str] = []
        for path in paths:
            top = split_path(path)[0]
            if top not in cols:
                cols.append(top)
        return tuple(cols)


def resolve_path(
    nodes: Sequence[SchemaNode], path: str, scalar: bool = False, string_only: bool = False
) -> SchemaNode:
    """The schema node at a field path (`customer/id` for nested fields): the one resolver of
    field paths. FieldNotFound says why a path does not resolve (field names only, no values);
    `scalar` and `string_only` also require a scalar or a STRING field."""
    level, found = nodes, None
    parts = split_path(path)
    for i, part in enumerate(parts):
        found = next((n for n in level if n.name == part), None)
        if found is None:
            where = f" inside {'/'.join(parts[:i])!r}" if i else ""
            names = ", ".join(n.name for n in level)
            raise FieldNotFound(f"{path!r} is not a field of the schema{where} ({names})")
        if i < len(parts) - 1:
            if found.type != "NODE":
                raise FieldNotFound(f"{path!r}: {part!r} is a {found.type}, not a NODE")
            if found.repeated:
                raise FieldNotFound(f"{path!r}: fields inside a repeated NODE are not supported")
            level = found.nodes
    assert found is not None
    if (scalar or string_only) and (
        found.type == "NODE" or found.repeated or (string_only and found.type != "STRING")
    ):
        kind = f"{'repeated ' if found.repeated else ''}{found.type}"
        need = "a STRING field" if string_only else "a scalar field"
        raise FieldNotFound(f"{path!r} must be {need}, it is {kind}")
    return found


def split_path(path: str) -> tuple[str, ...]:
    """`customer/id` -> ('customer', 'id'): STRM's notation for nested fields."""
    return tuple(path.split("/"))


def field_col(path: str) -> Column:
    """A contract field by path: `customer/id` is the `id` field inside the `customer` struct."""
    return F.col(".".join(f"`{p}`" for p in split_path(path)))
