"""Parsing data contracts, native or STRM's (camelCase keys, Simple Schema), into the model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from strm_spark.contract.model import (
    _FIELD_NAME,
    RESERVED_NAMES,
    SIMPLE_TYPES,
    Contract,
    SchemaNode,
    Validation,
    resolve_path,
)
from strm_spark.document import Node, read_document
from strm_spark.errors import ConfigError, FieldNotFound


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
_CONTRACT_FIELDS = {"key_field", "pii_fields", "data_subject_field", "field_metadata"}


# Fields of STRM's DataContract that say nothing about processing; accepted and ignored.
_STRM_IGNORED = {
    "ref",
    "id",
    "state",
    "isPublic",
    "is_public",
    "metadata",
    "projectId",
    "project_id",
}


def parse_schema(schema: Node) -> tuple[str, tuple[SchemaNode, ...]]:
    """A Simple Schema document `{name, nodes}` (STRM's `simpleSchema` wrapper accepted)."""
    if schema.has("simpleSchema") or schema.has("simple_schema"):
        schema = schema.child("simpleSchema" if schema.has("simpleSchema") else "simple_schema")
    schema.mapping({"name", "nodes", "description", "doc", "namespace", "avroName", "avro_name"})
    name = schema.child("name", "schema").string()
    return name, tuple(_parse_node(n) for n in schema.child("nodes").items())


def field_ref(
    nodes: Sequence[SchemaNode],
    node: Node,
    what: str,
    scalar: bool = True,
    string_only: bool = False,
) -> SchemaNode:
    """The schema node a document's field path names (`customer/id` for nested fields), or an
    error at that document path saying why it does not resolve."""
    try:
        return resolve_path(nodes, node.string(), scalar=scalar, string_only=string_only)
    except FieldNotFound as exc:
        raise node.error(f"{what} {exc}") from None


def parse_contract(data: Any, source: str = "<inline>", schema: Node | None = None) -> Contract:
    """Validate a contract document (already parsed YAML/JSON) into a Contract.

    `schema` is a Simple Schema given apart from the contract (STRM's --schema file)."""
    root = Node(source, data)
    raw = {k: v for k, v in root.mapping().items() if k not in _STRM_IGNORED}
    root = Node(source, raw).snake_keys(_CONTRACT_FIELDS)
    root.mapping(
        {
            "schema",
            "key_field",
            "pii_fields",
            "data_subject_field",
            "validations",
            "name",
            "field_metadata",
        }
    )

    if schema is None:
        schema = root.child("schema")
    elif root.has("schema"):
        raise root.child("schema").error("the schema is given both here and as a separate file")
    schema_name, nodes = parse_schema(schema)
    if not nodes:
        raise ConfigError(
            schema.source,
            schema.path + ".nodes" if schema.path else "nodes",
            "expected at least one field",
        )
    seen: set[str] = set()
    for i, n in enumerate(nodes):
        path = f"schema.nodes[{i}].name"
        if n.name in seen:
            raise ConfigError(source, path, f"duplicate field name {n.name!r}")
        if n.name in RESERVED_NAMES:
            raise ConfigError(source, path, f"{n.name!r} is reserved for strm-spark's own columns")
        seen.add(n.name)

    def resolve(node: Node, what: str) -> SchemaNode:
        return field_ref(nodes, node, what, scalar=False)

    def scalar(node: Node, what: str, string_only: bool = False) -> str:
        field_ref(nodes, node, what, string_only=string_only)
        return node.value

    key = scalar(root.child("key_field"), "key field", string_only=True)

    pii = _pii_fields(root, resolve)
    subject: str | None = None
    if root.has("data_subject_field"):
        subject = scalar(root.child("data_subject_field"), "data subject field")

    validations = [_validation(item, scalar) for item in root.child("validations", []).items()]
    return Contract(schema_name, nodes, key, tuple(pii), subject, tuple(validations), source)


def _pii_fields(root: Node, resolve: Any) -> list[tuple[str, int]]:
    """The PII fields and their purpose levels: STRM's newer `field_metadata` (which wins when
    both are given) or `pii_fields`."""
    pii: list[tuple[str, int]] = []
    if root.has("field_metadata"):
        # STRM's newer form; it wins over pii_fields when both are given.
        for entry in root.child("field_metadata").items():
            entry = entry.snake_keys({"field_name", "personal_data_config"})
            entry.mapping(
                {
                    "field_name",
                    "personal_data_config",
                    "statistical_data_type",
                    "statisticalDataType",
                    "ordinal_values",
                    "ordinalValues",
                    "null_handling_config",
                    "nullHandlingConfig",
                }
            )
            if not entry.has("personal_data_config"):
                continue
            conf = entry.child("personal_data_config")
            conf = conf.snake_keys(
                {"is_pii", "is_quasi_id", "purpose_level", "gdpr_special_personal_data_type"}
            )
            conf.mapping(
                {"is_pii", "is_quasi_id", "purpose_level", "gdpr_special_personal_data_type"}
            )
            if not conf.child("is_pii", False).boolean():
                continue
            pii.append(
                (
                    _pii_field(entry.child("field_name"), resolve),
                    conf.child("purpose_level", 0).integer(minimum=0),
                )
            )
    else:
        for name, level_node in root.child("pii_fields", {}).entries():
            pii.append(
                (
                    _pii_field(Node(root.source, name, level_node.path), resolve),
                    level_node.integer(minimum=0),
                )
            )
    return pii


def _validation(item: Node, scalar: Any) -> Validation:
    item.mapping({"field", "type", "value"})
    vfield = scalar(item.child("field"), "validation field")
    item.child("type", "regex").choice(["regex"])
    # Checked with Java's regex semantics (Spark's rlike) by strm_spark.config.preflight.
    return Validation(vfield, item.child("value").string())


def _pii_field(node: Node, resolve: Any) -> str:
    """A PII field path: a STRING field, or a repeated STRING field (each element encrypted)."""
    found = resolve(node, "PII field")
    if found.type != "STRING":
        kind = f"{'repeated ' if found.repeated else ''}{found.type}"
        raise node.error(
            f"PII fields must be STRING fields (or repeated STRING), {node.value!r} is {kind}"
        )
    return node.value


def load_contract(path: str | Path) -> Contract:
    return parse_contract(read_document(path), str(path))
