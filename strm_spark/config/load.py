"""Loading a native job config (YAML or JSON): every field checked, with its path, before Spark
starts."""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any

from strm_spark.config import outputs as where
from strm_spark.config.model import (
    CONSENT_TYPES,
    DEFAULT_RETENTION_DAYS,
    FORCED_READER_OPTIONS,
    KAFKA_VALUE_FORMATS,
    KMS_URI_PREFIXES,
    SOURCE_FORMATS,
    WRITE_MODES,
    ConsentConfig,
    DerivedConfig,
    JobConfig,
    KafkaSource,
    MasterKeyRef,
    SecretRef,
    SourceConfig,
    TimestampConfig,
)
from strm_spark.contract.model import Contract
from strm_spark.contract.parse import field_ref, parse_contract
from strm_spark.document import Node, read_document
from strm_spark.errors import ConfigError, PatternError
from strm_spark.storage.location import (
    Location,
    check_locations,
    resolve_path,
)
from strm_spark.timestamps.plan import check_pattern

_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def checked_pattern(node: Node) -> str:
    """A Java DateTimeFormatter pattern Spark can parse with, that gives a whole date: a row's
    day decides its key and the key's expiry, so a pattern without a year would put every row
    on a day of 1970, and purge-expired would destroy those keys at once."""
    try:
        info = check_pattern(node.string())
    except PatternError as exc:
        raise node.error(f"not a usable Java DateTimeFormatter pattern: {exc}") from None
    if not info.full_date:
        raise node.error(
            "the pattern gives no whole date (a year with month and day, or with day of year; "
            "or 'Y', 'w' and a day of week): each row's UTC day decides its key and expiry"
        )
    return node.value


def checked_zone(node: Node) -> str:
    """An IANA time zone id."""
    zone = node.string()
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise node.error(
            f"unknown time zone {zone!r}; expected an IANA zone id like Europe/Amsterdam"
        ) from None
    return zone


def checked_levels(node: Node, consent_type: str) -> tuple[int, ...]:
    """A derived output's levels: exactly one for CUMULATIVE, at least one for GRANULAR."""
    levels = node.levels()
    if consent_type == "CUMULATIVE" and len(levels) != 1:
        raise node.error("a CUMULATIVE output takes exactly one level, e.g. [2]")
    if consent_type == "GRANULAR" and not levels:
        raise node.error("a GRANULAR output takes at least one level")
    return levels


_TOP_FIELDS = {
    "name",
    "source",
    "contract",
    "event_contract_ref",
    "consent",
    "timestamp",
    "keys",
    "masking",
    "outputs",
    "max_rejected_fraction",
}


def parse_job_config(
    data: Any, source: str = "<inline>", base_dir: Path | None = None
) -> JobConfig:
    """Validate a job config document; paths resolve relative to `base_dir`."""
    base = base_dir or Path.cwd()
    root = Node(source, data)
    root.mapping(_TOP_FIELDS)
    name = root.child("name").string()
    if not _NAME.match(name):
        raise root.child("name").error("expected letters, digits, '_' or '-'")
    contract = _contract(root.child("contract"), source, base)
    src = _source(root.child("source"), contract, base)
    ref = root.child("event_contract_ref", f"strm-spark/{name}/1.0.0").string()
    consent = _consent(root.child("consent"), contract)
    timestamp = _timestamp(root.child("timestamp"), contract)
    group_id, key_store, retention, master_key, apart = _keys(root.child("keys"), base)
    seed = _masking_seed(root, base)

    onode = root.child("outputs")
    onode.mapping(_OUTPUT_FIELDS)
    formula_guard = onode.child("csv_formula_guard", True).boolean()
    mode = onode.child("mode", "append").choice(WRITE_MODES)
    layout_columns = (
        "strmDay",
        *[n for n in contract.field_names if n not in contract.sensitive_columns],
    )
    encrypted = where.output(onode.child("encrypted"), base, layout_columns=layout_columns)
    subjects = where.output(onode.child("data_subjects"), base, ("delta",))
    rejected = where.output(onode.child("rejected"), base)
    derived = _derived(onode, contract, base, seed, layout_columns)
    summary_dir = where.summary_dir(onode, encrypted, base)
    locations = [
        ("outputs.encrypted", encrypted.path),
        ("outputs.data_subjects", subjects.path),
        ("outputs.rejected", rejected.path),
    ]
    locations += [(f"outputs.derived[{i}]", d.path) for i, d in enumerate(derived)]
    checkpoint = (
        where.location(onode.child("checkpoint"), base, ()) if onode.has("checkpoint") else None
    )
    if checkpoint is not None:
        locations.append(("outputs.checkpoint", checkpoint))
    check_locations(source, locations, ("keys.store", key_store), src.path, apart)
    audit = where.audit(onode, locations, key_store, base)
    if src.incremental:
        _check_incremental(
            onode,
            mode,
            [("outputs.encrypted", encrypted), ("outputs.rejected", rejected)]
            + [(f"outputs.derived {d.name}", d) for d in derived],
        )
    max_rejected = _max_rejected(root)
    return JobConfig(
        name=name,
        source=src,
        contract=contract,
        event_contract_ref=ref,
        consent=consent,
        timestamp=timestamp,
        group_id=group_id,
        key_store=key_store,
        retention_days=retention,
        encrypted=encrypted,
        data_subjects=subjects,
        rejected=rejected,
        derived=tuple(derived),
        summary_dir=summary_dir,
        write_mode=mode,
        masking_seed=seed,
        config_path=source,
        master_key=master_key,
        audit=audit,
        max_rejected_fraction=max_rejected,
        csv_formula_guard=formula_guard,
        keys_apart_from_data=apart,
        checkpoint=checkpoint,
    )


_OUTPUT_FIELDS = {
    "mode",
    "encrypted",
    "data_subjects",
    "rejected",
    "derived",
    "summary_dir",
    "audit",
    "csv_formula_guard",
    "checkpoint",
}
_DERIVED_FIELDS = {
    "name",
    "path",
    "table",
    "format",
    "consent_type",
    "consent_levels",
    "masked_fields",
    "partition_by",
    "cluster_by",
}


def _contract(cnode: Node, source: str, base: Path) -> Contract:
    """The contract: a file path (relative to this config) or an inline mapping."""
    if isinstance(cnode.value, str):
        cpath = resolve_path(cnode.string(), base)
        return parse_contract(read_document(cpath), cpath)
    return parse_contract(cnode.value, f"{source} (contract)")


def _field_ref(contract: Contract, node: Node, what: str, string_only: bool = False) -> str:
    """A scalar field path of the contract's schema (`customer/id` for nested fields)."""
    field_ref(contract.nodes, node, what, string_only=string_only)
    return node.value


def _kafka(snode: Node) -> KafkaSource:
    """`source.kafka`: {bootstrap_servers, topic, value_format: json|csv, timestamp_fallback}."""
    if not snode.has("kafka"):
        raise snode.error("a kafka source needs kafka: {bootstrap_servers: ..., topic: ...}")
    knode = snode.child("kafka")
    knode.mapping({"bootstrap_servers", "topic", "value_format", "timestamp_fallback"})
    return KafkaSource(
        bootstrap_servers=knode.child("bootstrap_servers").string(),
        topic=knode.child("topic").string(),
        value_format=knode.child("value_format", "json").choice(KAFKA_VALUE_FORMATS),
        timestamp_fallback=knode.child("timestamp_fallback", False).boolean(),
    )


def _source(snode: Node, contract: Contract, base: Path) -> SourceConfig:
    snode.mapping({"path", "table", "format", "options", "incremental", "kafka"})
    fmt = snode.child("format", "csv").choice(SOURCE_FORMATS)
    options = []
    for key, opt in snode.child("options", {}).entries():
        if key.lower() in {o.lower() for o in FORCED_READER_OPTIONS}:  # Spark ignores case
            raise opt.error(
                "set by strm-spark and cannot be changed (bad rows are quarantined in the "
                "rejected table, never dropped or failing the run): remove it"
            )
        if isinstance(opt.value, bool):
            options.append((key, "true" if opt.value else "false"))
        elif isinstance(opt.value, (str, int, float)):
            options.append((key, str(opt.value)))
        else:
            raise opt.error("expected a string, number or boolean reader option")
    incremental = snode.child("incremental", False).boolean()
    if fmt == "kafka":
        kafka = _kafka(snode)
        if incremental:
            raise snode.child("incremental").error(
                "a kafka source is new records only by nature: run it with strm-spark stream"
            )
        if snode.has("path") or snode.has("table"):
            raise snode.error("a kafka source has kafka: {...}, not a path or table")
        if kafka.value_format == "csv":
            _check_flat(contract)
        where_ = Location(f"kafka://{kafka.bootstrap_servers}/{kafka.topic}", "uri")
        return SourceConfig(where_, fmt, tuple(options), False, kafka)
    elif snode.has("kafka"):
        raise snode.child("kafka").error("only a kafka source (format: kafka) takes kafka")
    if incremental and fmt == "delta":
        raise snode.child("incremental").error(
            "a Delta source is a table, not files: incremental needs a csv, json or parquet source"
        )
    path = where.path_or_table(snode, base)
    if path.is_table:
        if incremental:
            raise snode.child("incremental").error(
                "a table source is read whole: incremental needs a csv, json or parquet source"
            )
        fmt = "delta"
    if fmt == "csv":
        _check_flat(contract)
    return SourceConfig(path, fmt, tuple(options), incremental)


def _check_flat(contract: Contract) -> None:
    for i, n in enumerate(contract.nodes):
        if n.type == "NODE" or n.repeated:
            raise ConfigError(
                contract.source,
                f"schema.nodes[{i}]",
                f"CSV sources hold flat fields only; {n.name!r} is a {'repeated ' if n.repeated else ''}{n.type}",
            )


def _consent(consent_node: Node, contract: Contract) -> ConsentConfig:
    consent_node.mapping({"default_levels", "extractor"})
    default_levels = consent_node.child("default_levels").levels()
    ex_field = None
    mapping: list[tuple[str, tuple[int, ...]]] = []
    if consent_node.has("extractor"):
        ex = consent_node.child("extractor")
        ex.mapping({"field", "mapping"})
        ex_field = _field_ref(contract, ex.child("field"), "consent field")
        for value, levels in ex.child("mapping", {}).entries():
            mapping.append((value, levels.levels()))
    return ConsentConfig(default_levels, ex_field, tuple(mapping))


def _timestamp(tnode: Node, contract: Contract) -> TimestampConfig:
    tnode.mapping({"field", "pattern", "default_time_zone"})
    ts_field = _field_ref(contract, tnode.child("field"), "timestamp field", string_only=True)
    return TimestampConfig(
        ts_field,
        checked_pattern(tnode.child("pattern")),
        checked_zone(tnode.child("default_time_zone", "UTC")),
    )


def _keys(knode: Node, base: Path) -> tuple[str, Location, int, MasterKeyRef | None, bool]:
    """The key group, the store's location, the retention in days, the master key, and whether
    a store in a schema must keep apart from the data outputs' schemas."""
    knode.mapping({"group_id", "store", "retention_days", "master_key", "apart_from_data"})
    group_id = knode.child("group_id").string()
    key_store = where.location(knode.child("store"), base, ("schema",))
    apart = knode.child("apart_from_data", True).boolean()
    retention = knode.child("retention_days", DEFAULT_RETENTION_DAYS).integer(minimum=0)
    master_key = _master_key(knode.child("master_key"), base) if knode.has("master_key") else None
    return group_id, key_store, retention, master_key, apart


def _masking_seed(root: Node, base: Path) -> SecretRef | None:
    if not root.has("masking"):
        return None
    mnode = root.child("masking")
    mnode.mapping({"seed_env", "seed_file"})
    if mnode.has("seed_env") == mnode.has("seed_file"):
        raise mnode.error("expected exactly one of seed_env or seed_file")
    if mnode.has("seed_env"):
        return SecretRef(env=mnode.child("seed_env").string(), config_field="masking.seed_env")
    return SecretRef(file=resolve_path(mnode.child("seed_file").string(), base))


def _derived(
    onode: Node,
    contract: Contract,
    base: Path,
    seed: SecretRef | None,
    layout_columns: tuple[str, ...],
) -> list[DerivedConfig]:
    derived: list[DerivedConfig] = []
    names: set[str] = set()
    for dnode in onode.child("derived", []).items():
        dnode.mapping(_DERIVED_FIELDS)
        dname = dnode.child("name").string()
        if dname in names:
            raise dnode.child("name").error(f"duplicate derived output name {dname!r}")
        names.add(dname)
        ctype = dnode.child("consent_type").choice(CONSENT_TYPES)
        levels = checked_levels(dnode.child("consent_levels"), ctype)
        masked = tuple(
            _field_ref(contract, m, "masked field")
            for m in dnode.child("masked_fields", []).items()
        )
        if masked and seed is None:
            raise dnode.child("masked_fields").error(
                "masked fields need a secret seed: set masking.seed_env or masking.seed_file"
            )
        layout = {
            k: v
            for k, v in dnode.value.items()
            if k in ("path", "table", "format", "partition_by", "cluster_by")
        }
        out = where.output(
            Node(dnode.source, layout, dnode.path), base, layout_columns=layout_columns
        )
        derived.append(
            DerivedConfig(
                dname,
                out.path,
                out.format,
                ctype,
                levels,
                masked,
                partition_by=out.partition_by,
                cluster_by=out.cluster_by,
            )
        )
    return derived


def _check_incremental(onode: Node, mode: str, outputs: list[tuple[str, Any]]) -> None:
    not_delta = [(f, o.format) for f, o in outputs if o.format != "delta"]
    if not_delta:
        raise ConfigError(
            onode.source,
            "source.incremental",
            f"exactly-once incremental runs write Delta tables only; {not_delta[0][0]} is {not_delta[0][1]}",
        )
    if mode != "append":
        raise ConfigError(
            onode.source,
            "outputs.mode",
            "incremental runs append; use --reprocess to rebuild the outputs",
        )


def _max_rejected(root: Node) -> float | None:
    if not root.has("max_rejected_fraction"):
        return None
    fnode = root.child("max_rejected_fraction")
    value = fnode.as_type(float, "a number from 0 to 1")
    if not 0 <= value <= 1:
        raise fnode.error("expected a number from 0 to 1")
    return float(value)


def _master_key(node: Node, base: Path) -> MasterKeyRef:
    """`keys.master_key`: {keyset_file: PATH} or {kms_uri: gcp-kms://... | aws-kms://..., credentials_file?}."""
    node.mapping({"keyset_file", "kms_uri", "credentials_file"})
    if node.has("keyset_file") == node.has("kms_uri"):
        raise node.error("expected exactly one of keyset_file or kms_uri")
    if node.has("keyset_file"):
        if node.has("credentials_file"):
            raise node.child("credentials_file").error("credentials_file only applies to a kms_uri")
        return MasterKeyRef(
            keyset_file=resolve_path(node.child("keyset_file").string(), base),
            config_field="keys.master_key.keyset_file",
        )
    uri = node.child("kms_uri").string()
    if not uri.startswith(KMS_URI_PREFIXES):
        raise node.child("kms_uri").error(
            f"expected a Tink KMS key URI starting with {' or '.join(KMS_URI_PREFIXES)}"
        )
    creds = (
        resolve_path(node.child("credentials_file").string(), base)
        if node.has("credentials_file")
        else None
    )
    return MasterKeyRef(kms_uri=uri, credentials_file=creds)


def load_job_config(path: str | Path) -> JobConfig:
    p = Path(path)
    return parse_job_config(read_document(p), str(path), p.resolve().parent)
