"""STRM Privacy compatibility: run STRM's own batch-job JSON, contract and schema unchanged.

STRM's configuration (protobuf `BatchJob` as JSON, snake_case or lowerCamelCase keys, enum
names or numbers) is translated into a JobConfig whose data outputs are single CSV files in
STRM's layout. Keys, data subjects and rejected rows are kept in Delta tables as in native jobs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from strm_spark.config.load import checked_levels, checked_pattern, checked_zone
from strm_spark.config.model import (
    DEFAULT_RETENTION_DAYS,
    ConsentConfig,
    DerivedConfig,
    JobConfig,
    MasterKeyRef,
    OutputConfig,
    SourceConfig,
    TimestampConfig,
)
from strm_spark.contract.model import Contract
from strm_spark.contract.parse import field_ref, parse_contract
from strm_spark.document import Node, read_document, snake_case
from strm_spark.errors import ConfigError
from strm_spark.storage.location import (
    Location,
    check_locations,
    parse_name,
    resolve_location,
    resolve_path,
)

# Enum numbers of STRM's protobuf definitions (entities_v1.proto).
_CONSENT_TYPES = {1: "CUMULATIVE", 2: "GRANULAR"}
_HASH_TYPES = {
    "": "MURMUR3",
    "MURMUR3": "MURMUR3",
    "MURMURHASH3": "MURMUR3",
    "HMAC_SHA256": "HMAC_SHA256",
}
# Map fields whose keys are data (field values, event contract refs), not field names.
_DATA_KEYED = {"field_patterns"}


def normalize_keys(value: Any, data_keyed: bool = False, source: str = "<document>") -> Any:
    """lowerCamelCase keys -> snake_case, recursively; keys of data-keyed maps are kept. A key
    given in both spellings is a ConfigError naming it."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = key if data_keyed else snake_case(str(key))
            if name in out:
                raise ConfigError(source, str(key), "given twice (snake_case and lowerCamelCase)")
            keyed = not data_keyed and name in _DATA_KEYED
            out[name] = normalize_keys(item, data_keyed=keyed, source=source)
        return out
    if isinstance(value, list):
        return [normalize_keys(v, source=source) for v in value]
    return value


def parse_connectors(specs: list[str]) -> dict[str, str]:
    """`NAME=BASE_URI` arguments -> {name: base location}."""
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, base = spec.partition("=")
        if not sep or not name or not base:
            raise ConfigError("--connector", "", f"expected NAME=BASE_URI, got {spec!r}")
        if name in out:
            raise ConfigError("--connector", "", f"connector {name!r} given twice")
        out[name] = base
    return out


def _dirname(location: str) -> str:
    return location.rsplit("/", 1)[0]


class _StrmConfig:
    """Reads one STRM batch-job document; every error names the STRM field path."""

    def __init__(self, source: str, data: Any, connectors: Mapping[str, str], base: Path) -> None:
        self.root = Node(source, normalize_keys(data, source=source))
        self.source = source
        self.connectors = connectors
        self.base = base

    def location(self, node: Node) -> tuple[str, str]:
        """A DataConnectorAndType -> (file location, charset)."""
        node.mapping({"data_connector_ref", "path_prefix", "file_name", "data_type"})
        ref = node.child("data_connector_ref")
        ref.mapping({"name", "billing_id", "project_id"})
        name_node = ref.child("name")
        name = name_node.string()
        if name not in self.connectors:
            given = ", ".join(sorted(self.connectors)) or "none"
            raise name_node.error(
                f"no --connector for data connector {name!r} (given: {given}); add --connector {name}=BASE_URI"
            )
        dtype = node.child("data_type")
        dtype.mapping({"csv", "database"})
        if not dtype.has("csv"):
            raise dtype.error("only CSV data (data_type.csv) is supported")
        csv = dtype.child("csv")
        csv.mapping({"charset"})
        charset = csv.child("charset", "UTF-8").string()
        try:
            "".encode(charset)
        except LookupError:
            raise csv.child("charset").error(f"unknown charset {charset!r}") from None
        prefix = node.child("path_prefix", "").as_type(str).strip("/")
        file_name = node.child("file_name").string().lstrip("/")
        base = self.connectors[name].rstrip("/")
        parts = [p for p in (prefix, file_name) if p]
        location = base + "/" + "/".join(parts)
        return resolve_location(location, self.base), charset


def load_strm_job(
    config_path: str | Path,
    contract_path: str | Path,
    schema_path: str | Path,
    connectors: Mapping[str, str],
    key_store: str | None = None,
    key_schema: str | None = None,
    master_key_file: str | None = None,
) -> JobConfig:
    """Translate STRM's batch-job config, contract and schema files into a JobConfig;
    `master_key_file` (a Tink AEAD keyset file) encrypts the key store's keysets at rest."""
    source = str(config_path)
    cwd = Path.cwd()
    schema_doc = read_document(schema_path)
    contract = parse_contract(
        read_document(contract_path), str(contract_path), schema=Node(str(schema_path), schema_doc)
    )
    cfg = _StrmConfig(source, read_document(config_path), connectors, cwd)
    root = cfg.root
    root.mapping(_JOB_FIELDS)
    src_path, src_charset = cfg.location(root.child("source_data"))
    source_cfg = SourceConfig(src_path, "csv", (("header", "true"), ("encoding", src_charset)))
    consent = _consent(root.child("consent"), contract)
    group_id, timestamp = _encryption(root.child("encryption"), contract)
    ref = _event_contract_ref(root.child("event_contract_ref"))
    enc_node = root.child("encrypted_data")
    enc_node.mapping({"target"})
    enc_path, enc_charset = cfg.location(enc_node.child("target"))
    keys_node = root.child("encryption_keys_data")
    keys_node.mapping({"target"})
    keys_path, keys_charset = cfg.location(keys_node.child("target"))
    derived = [
        _derived(cfg, i, dnode, contract, ref)
        for i, dnode in enumerate(root.child("derived_data", []).items())
    ]

    state = _dirname(keys_path) + "/strm-spark"
    store = _key_store(source, key_store or f"{state}/keystore", key_schema, bool(key_store), cwd)
    subjects = resolve_location(f"{state}/data_subjects", cwd)
    rejected = resolve_location(f"{_dirname(enc_path)}/strm-spark/rejected", cwd)
    outputs = [
        ("encrypted_data.target", enc_path),
        ("encryption_keys_data.target", keys_path),
        ("(data subjects table)", subjects),
        ("(rejected table)", rejected),
    ]
    outputs += [(f"derived_data[{i}].target", d.path) for i, d in enumerate(derived)]
    check_locations(source, outputs, ("--keys-store", store), src_path)
    master = None
    if master_key_file:
        master = MasterKeyRef(
            keyset_file=resolve_path(master_key_file, cwd), config_field="--master-key"
        )
    return JobConfig(
        name=_job_name(Path(source).stem),
        source=source_cfg,
        contract=contract,
        event_contract_ref=ref,
        consent=consent,
        timestamp=timestamp,
        group_id=group_id,
        key_store=store,
        retention_days=DEFAULT_RETENTION_DAYS,
        encrypted=OutputConfig(enc_path, "strm-csv", enc_charset),
        data_subjects=OutputConfig(subjects, "delta"),
        rejected=OutputConfig(rejected, "delta"),
        derived=tuple(derived),
        summary_dir=resolve_location(f"{_dirname(enc_path)}/strm-spark/_runs", cwd),
        write_mode="overwrite",
        config_path=source,
        keys_export=OutputConfig(keys_path, "strm-csv", keys_charset),
        master_key=master,
    )


def _key_store(source: str, path: str, schema: str | None, both: bool, cwd: Path) -> Location:
    """`--keys-store PATH` (or its default), or `--keys-schema [CATALOG.]SCHEMA`."""
    if not schema:
        return resolve_location(path, cwd)
    if both:
        raise ConfigError(source, "--keys-schema", "give --keys-store or --keys-schema, not both")
    named = parse_name(schema, "schema", (1, 2))
    if not isinstance(named, Location):
        raise ConfigError(source, "--keys-schema", named)
    return named


_JOB_FIELDS = {
    "ref",
    "states",
    "source_data",
    "consent",
    "encryption",
    "event_contract_ref",
    "encrypted_data",
    "encryption_keys_data",
    "derived_data",
    "policy_id",
}


def _field(contract: Contract, node: Node, what: str, string_only: bool = False) -> str:
    """A scalar field path of the schema (STRING only when `string_only`)."""
    field_ref(contract.nodes, node, what, string_only=string_only)
    return node.value


def _consent(consent_node: Node, contract: Contract) -> ConsentConfig:
    consent_node.mapping({"default_consent_levels", "consent_level_extractor"})
    default_levels = consent_node.child("default_consent_levels", []).levels()
    ex_field, mapping = None, []
    if consent_node.has("consent_level_extractor"):
        ex = consent_node.child("consent_level_extractor")
        ex.mapping({"field", "field_patterns"})
        ex_field = _field(contract, ex.child("field"), "consent field")
        for value, levels_node in ex.child("field_patterns", {}).entries():
            levels_node.mapping({"consent_levels"})
            mapping.append((value, levels_node.child("consent_levels", []).levels()))
    return ConsentConfig(default_levels, ex_field, tuple(mapping))


def _encryption(enc: Node, contract: Contract) -> tuple[str, TimestampConfig]:
    """The key group id and the event timestamp's field, pattern and default zone."""
    enc.mapping({"timestamp_config", "batch_job_group_id"})
    group_id = enc.child("batch_job_group_id", "default").string()
    tsc = enc.child("timestamp_config")
    tsc.mapping({"field", "format", "default_time_zone"})
    ts_field = _field(contract, tsc.child("field"), "timestamp field", string_only=True)
    zone = "UTC"
    if tsc.has("default_time_zone"):
        znode = tsc.child("default_time_zone")
        if isinstance(znode.value, Mapping):  # google.type.TimeZone {id, version}
            znode.mapping({"id", "version"})
            znode = znode.child("id")
        zone = checked_zone(znode)
    return group_id, TimestampConfig(ts_field, checked_pattern(tsc.child("format")), zone)


def _event_contract_ref(ref_node: Node) -> str:
    ref_node.mapping({"handle", "name", "version"})
    version = ref_node.child("version")
    if not re.match(r"^\d+\.\d+\.\d+$", version.string()):
        raise version.error("expected a semantic version like 1.0.0")
    return f"{ref_node.child('handle').string()}/{ref_node.child('name').string()}/{version.value}"


def _derived(cfg: _StrmConfig, i: int, dnode: Node, contract: Contract, ref: str) -> DerivedConfig:
    dnode.mapping({"target", "consent_levels", "consent_level_type", "masked_fields"})
    path, charset = cfg.location(dnode.child("target"))
    ctype = _consent_type(dnode.child("consent_level_type"))
    levels = checked_levels(dnode.child("consent_levels", []), ctype)
    masked: tuple[str, ...] = ()
    hash_type, seed = "MURMUR3", ""
    if dnode.has("masked_fields"):
        masked, hash_type, seed = _masked_fields(dnode.child("masked_fields"), contract, ref)
    name = Path(path).name.rsplit(".", 1)[0] or f"derived-{i}"
    return DerivedConfig(
        name, path, "strm-csv", ctype, levels, masked, charset, hash_type, inline_seed=seed
    )


def _masked_fields(mnode: Node, contract: Contract, ref: str) -> tuple[tuple[str, ...], str, str]:
    """The masked fields of a derived output, its hash type and seed."""
    mnode.mapping({"hash_type", "seed", "field_patterns"})
    htype = mnode.child("hash_type", "").as_type(str)
    if htype.upper() not in _HASH_TYPES:
        raise mnode.child("hash_type").error("expected MURMUR3 (or empty) or HMAC_SHA256")
    hash_type = _HASH_TYPES[htype.upper()]
    seed = mnode.child("seed", "").as_type(str)
    names: list[str] = []
    for contract_ref, patterns in mnode.child("field_patterns", {}).entries():
        if contract_ref != ref:
            raise patterns.error(
                f"masking is for event contract {contract_ref!r}, but this job uses {ref!r}"
            )
        patterns.mapping({"field_patterns"})
        for p in patterns.child("field_patterns", []).items():
            names.append(_field(contract, p, "masked field"))
    if names and hash_type == "HMAC_SHA256" and not seed:
        raise mnode.child("seed").error("HMAC_SHA256 masking needs a seed")
    return tuple(names), hash_type, seed


def _consent_type(node: Node) -> str:
    value = node.value
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in _CONSENT_TYPES:
            raise node.error(f"expected 1 (CUMULATIVE) or 2 (GRANULAR), got {value}")
        return _CONSENT_TYPES[value]
    return node.choice(["CUMULATIVE", "GRANULAR"])


def _job_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_\-]+", "-", stem).strip("-")
    return name or "strm-job"
