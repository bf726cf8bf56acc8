"""Data contracts: Simple Schema, key field, PII fields with purpose levels, validations."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import types as T

from ._validate import Node
from .errors import ConfigError

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

    @property
    def is_scalar_string(self) -> bool:
        return self.type == "STRING" and not self.repeated


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

    def node(self, name: str) -> SchemaNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def spark_schema(self) -> T.StructType:
        return T.StructType([T.StructField(n.name, n.spark_type(), True) for n in self.nodes])

    @property
    def sensitive_columns(self) -> tuple[str, ...]:
        """Columns that can hold plaintext personal data: PII fields and the data subject."""
        cols = list(self.pii_names)
        if self.data_subject_field and self.data_subject_field not in cols:
            cols.append(self.data_subject_field)
        return tuple(cols)


def read_document(path: str | Path) -> Any:
    """Read a YAML or JSON file; errors name the file, never its content."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read file ({type(exc).__name__})") from None
    try:
        if p.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        line = getattr(exc, "lineno", None)
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            line = mark.line + 1
        where = f" near line {line}" if line else ""
        raise ConfigError(str(path), "", f"not valid {p.suffix.lstrip('.').upper() or 'YAML'}{where}") from None


def _parse_node(node: Node) -> SchemaNode:
    node.mapping({"name", "type", "required", "repeated", "nodes", "description"})
    name = node.child("name").string()
    if not _FIELD_NAME.match(name):
        raise node.child("name").error(
            "expected a field name of letters, digits, '_', '-', '.' or spaces, starting with a letter or '_'"
        )
    type_name = node.child("type").choice([*SIMPLE_TYPES, "NODE"])
    required = node.child("required", False).boolean()
    repeated = node.child("repeated", False).boolean()
    children: tuple[SchemaNode, ...] = ()
    if type_name == "NODE":
        children = tuple(_parse_node(n) for n in node.child("nodes").items())
        if not children:
            raise node.child("nodes").error("a NODE needs at least one child node")
    elif node.has("nodes"):
        raise node.child("nodes").error(f"only NODE fields have nodes, this field is {type_name}")
    return SchemaNode(name, type_name, required, repeated, children)


# Accept both our snake_case names and STRM's lowerCamelCase names for contract fields.
_CONTRACT_ALIASES = {
    "keyField": "key_field",
    "piiFields": "pii_fields",
    "dataSubjectField": "data_subject_field",
}


def parse_contract(data: Any, source: str = "<inline>") -> Contract:
    """Validate a contract document (already parsed YAML/JSON) into a Contract."""
    root = Node(source, data)
    raw = dict(root.mapping())
    for camel, snake in _CONTRACT_ALIASES.items():
        if camel in raw:
            if snake in raw:
                raise ConfigError(source, camel, f"given twice (also as {snake})")
            raw[snake] = raw.pop(camel)
    root = Node(source, raw)
    root.mapping({"schema", "key_field", "pii_fields", "data_subject_field", "validations", "name"})

    schema = root.child("schema")
    schema.mapping({"name", "nodes", "description"})
    schema_name = schema.child("name", "schema").string()
    nodes = tuple(_parse_node(n) for n in schema.child("nodes").items())
    if not nodes:
        raise schema.child("nodes").error("expected at least one field")
    seen: set[str] = set()
    for i, n in enumerate(nodes):
        path = f"schema.nodes[{i}].name"
        if n.name in seen:
            raise ConfigError(source, path, f"duplicate field name {n.name!r}")
        if n.name in RESERVED_NAMES:
            raise ConfigError(source, path, f"{n.name!r} is reserved for strm-spark's own columns")
        seen.add(n.name)
    by_name = {n.name: n for n in nodes}

    def top_level_field(node: Node, what: str) -> SchemaNode:
        name = node.string()
        if "/" in name:
            raise node.error(f"nested {what} paths are not supported yet; use a top-level field")
        if name not in by_name:
            raise node.error(f"{what} {name!r} is not a field of the schema ({', '.join(by_name)})")
        return by_name[name]

    key_node = root.child("key_field")
    key = top_level_field(key_node, "key field")
    if not key.is_scalar_string:
        raise key_node.error(f"the key field must be a STRING field, {key.name!r} is {key.type}")

    pii: list[tuple[str, int]] = []
    for name, level_node in root.child("pii_fields", {}).entries():
        field_node = Node(source, name, level_node.path)
        pii_node = top_level_field(field_node, "PII field")
        if not pii_node.is_scalar_string:
            kind = f"repeated {pii_node.type}" if pii_node.repeated else pii_node.type
            raise field_node.error(f"PII fields must be STRING fields, {name!r} is {kind}")
        pii.append((name, level_node.integer(minimum=0)))

    subject: str | None = None
    if root.has("data_subject_field"):
        subj_node = root.child("data_subject_field")
        subj = top_level_field(subj_node, "data subject field")
        if subj.type == "NODE" or subj.repeated:
            raise subj_node.error("the data subject field must be a scalar field")
        subject = subj.name

    validations: list[Validation] = []
    for item in root.child("validations", []).items():
        item.mapping({"field", "type", "value"})
        vfield = top_level_field(item.child("field"), "validation field")
        if vfield.type == "NODE" or vfield.repeated:
            raise item.child("field").error("regex validations apply to scalar fields only")
        item.child("type", "regex").choice(["regex"])
        pattern = item.child("value").string()
        try:
            re.compile(pattern)
        except re.error as exc:
            raise item.child("value").error(f"not a valid regular expression: {exc.msg} at position {exc.pos}") from None
        validations.append(Validation(vfield.name, pattern))

    return Contract(schema_name, nodes, key.name, tuple(pii), subject, tuple(validations), source)


def load_contract(path: str | Path) -> Contract:
    return parse_contract(read_document(path), str(path))
