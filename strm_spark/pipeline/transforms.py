"""DataFrame -> DataFrame steps of the batch job. Pure: no reading, writing or actions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark import consent as consent_rules
from strm_spark.columns import (
    CONSENT,
    CORRUPT,
    DAY,
    ENC_CORRUPT,
    EPOCH_MS,
    KAFKA_MS,
    KEY_LINK,
    KEY_VALUE,
    RAW_PREFIX,
    REASONS,
    SUBJECT,
    col,
    enc_column,
    pii_column,
)
from strm_spark.contract.model import Contract, field_col, split_path
from strm_spark.timestamps.parse import epoch_millis, parse_event_time, utc_day


def _reason(cond: Column, text: str) -> tuple[Column, str]:
    """A reject reason: `text` where `cond` holds (a null condition holds no reason)."""
    return F.coalesce(cond, F.lit(False)), text


def with_typed_fields(df: DataFrame, contract: Contract) -> DataFrame:
    """Cast text columns to the contract's types; a value that does not cast is a reject
    reason naming the field and type (never the value). Raw text is kept in `__raw_<f>`."""
    reasons = []
    for node in contract.nodes:
        target = node.spark_type()
        current = df.schema[node.name].dataType
        if current == target:
            continue
        if not isinstance(current, T.StringType):
            df = df.withColumn(node.name, col(node.name).try_cast(target))
            continue
        df = df.withColumn(RAW_PREFIX + node.name, col(node.name))
        df = df.withColumn(node.name, F.trim(col(node.name)).try_cast(target))
        reasons.append(
            _reason(
                col(RAW_PREFIX + node.name).isNotNull() & col(node.name).isNull(),
                f"field '{node.name}' is not a valid {node.type}",
            )
        )
    return _add_reasons(df, reasons)


def _add_reasons(df: DataFrame, reasons: Sequence[tuple[Column, str]]) -> DataFrame:
    """REASONS extended by the texts whose condition holds. A valid row costs its conditions
    only: the array is built (with `concat`, no higher-order function, which Spark would not
    compile) where one of them holds, which in practice is a rare row."""
    existing = col(REASONS) if REASONS in df.columns else F.array().cast("array<string>")
    if not reasons:
        return df.withColumn(REASONS, existing)
    empty = F.array().cast("array<string>")
    found = F.concat(
        existing, *[F.when(cond, F.array(F.lit(text))).otherwise(empty) for cond, text in reasons]
    )
    any_found = reasons[0][0]
    for cond, _ in reasons[1:]:
        any_found = any_found | cond
    return df.withColumn(REASONS, F.when(any_found, found).otherwise(existing))


def with_event_time(df: DataFrame, field: str, pattern: str, default_time_zone: str) -> DataFrame:
    """`__epoch_ms` (epoch milliseconds, truncated) and `__day` (UTC day) of each row."""
    ts = parse_event_time(field_col(field), pattern, default_time_zone)
    millis = epoch_millis(ts)
    missing = field_col(field).isNull()
    if KAFKA_MS in df.columns:  # a Kafka record's timestamp stands in for a missing field
        millis = F.when(missing, col(KAFKA_MS)).otherwise(millis)
        missing = missing & col(KAFKA_MS).isNull()
    df = df.withColumn(EPOCH_MS, millis).withColumn(DAY, utc_day(col(EPOCH_MS)))
    return _add_reasons(
        df,
        [
            _reason(missing, f"timestamp field '{field}' is missing"),
            _reason(
                field_col(field).isNotNull() & col(EPOCH_MS).isNull(),
                f"timestamp field '{field}' does not match pattern '{pattern}'",
            ),
        ],
    )


def with_consent(
    df: DataFrame,
    default_levels: Sequence[int],
    field: str | None,
    mapping: Sequence[tuple[str, Sequence[int]]],
) -> DataFrame:
    value = field_col(field) if field else None
    return df.withColumn(CONSENT, consent_rules.consent_levels(value, default_levels, mapping))


def with_validations(df: DataFrame, contract: Contract) -> DataFrame:
    """Required fields and regex validations (a present value must match in full)."""
    reasons = []
    for node in contract.nodes:
        if node.required:
            reasons.append(
                _reason(col(node.name).isNull(), f"required field '{node.name}' is missing")
            )
    for rule in contract.validations:
        value = field_col(rule.field).cast("string")
        reasons.append(
            _reason(
                value.isNotNull() & ~value.rlike(f"^(?:{rule.pattern})$"),
                f"field '{rule.field}' does not match regex '{rule.pattern}'",
            )
        )
    return _add_reasons(df, reasons)


# What Spark's CSV reader puts where bytes are not valid in the source charset.
REPLACEMENT_CHAR = "\ufffd"


def with_undecodable_text(df: DataFrame, contract: Contract, charset: str) -> DataFrame:
    """Spark's CSV reader replaces bytes that are invalid in the source charset with U+FFFD and
    says nothing. Such a value is not what the producer wrote, so its row is rejected, naming the
    field (a genuine U+FFFD in the data cannot be told apart and is rejected too). For CSV text
    columns only: the JSON reader turns such a line into a malformed record instead."""
    names = [n for n in contract.field_names if isinstance(df.schema[n].dataType, T.StringType)]
    return _add_reasons(
        df,
        [
            _reason(col(n).contains(REPLACEMENT_CHAR), f"field '{n}' is not valid {charset} text")
            for n in names
        ],
    )


def with_malformed_records(
    df: DataFrame, charset: str = "UTF-8", source_format: str = "csv"
) -> DataFrame:
    """A record the reader could not split into fields is rejected for that reason alone; its
    fields are unreliable (a PII value may sit in a non-PII column), so they are cleared and only
    the encrypted raw record is kept (bytes that are not valid UTF-8 replaced by U+FFFD). The
    reason says what is wrong in the source's own terms: CSV fields and quoting, or JSON text
    and JSON types."""
    malformed = col(CORRUPT).isNotNull()
    # The JSON reader keeps a malformed line's raw bytes, which need not be UTF-8 at all; made
    # valid (bad bytes become U+FFFD) so the record can be encrypted and kept.
    undecodable = col(CORRUPT).contains(REPLACEMENT_CHAR) | ~F.is_valid_utf8(col(CORRUPT))
    if source_format == "json":
        shape = F.when(
            F.get_json_object(col(CORRUPT), "$").isNull(),
            F.lit("malformed record (not valid JSON)"),
        ).otherwise(
            F.lit(
                "malformed record (JSON that is not an object of the contract's types: a value "
                "of the wrong JSON type)"
            )
        )
    else:
        shape = F.lit("malformed record (wrong number of fields or bad quoting)")
    reason = F.array(
        F.when(undecodable, F.lit(f"malformed record (not valid {charset} text)")).otherwise(shape)
    )
    df = df.withColumn(CORRUPT, F.when(malformed, F.make_valid_utf8(col(CORRUPT))))
    cleared = [
        F.when(malformed, F.lit(None).cast(df.schema[c].dataType)).otherwise(col(c)).alias(c)
        if not c.startswith("__") or c.startswith(RAW_PREFIX) or c in (EPOCH_MS, DAY)
        else col(c)
        for c in df.columns
    ]
    return df.select(*cleared).withColumn(
        REASONS, F.when(malformed, reason).otherwise(col(REASONS))
    )


def with_raw_text(df: DataFrame, contract: Contract) -> DataFrame:
    """Fields as the text they were read as (CSV sources), for outputs that echo the input."""
    return df.select(
        *[
            col(RAW_PREFIX + c.name).alias(c.name)
            if RAW_PREFIX + c.name in df.columns
            else col(c.name)
            for c in contract.nodes
        ],
        *[col(c) for c in df.columns if c not in contract.field_names],
    )


def with_subject(df: DataFrame, field: str | None) -> DataFrame:
    value = (
        F.nullif(field_col(field).cast("string"), F.lit(""))
        if field
        else F.lit(None).cast("string")
    )
    return df.withColumn(SUBJECT, value)


def with_key_value(df: DataFrame, key_field: str) -> DataFrame:
    """`__kv`: the value rows are keyed by ("" for null: one entity); null when the row's day is
    unknown, so those rows fall to the run's quarantine key."""
    value = F.coalesce(field_col(key_field).cast("string"), F.lit(""))
    return df.withColumn(KEY_VALUE, F.when(col(DAY).isNull(), F.lit(None)).otherwise(value))


def strm_meta(event_contract_ref: str) -> Column:
    """The strmMeta struct of STRM's output, as one column."""
    return F.struct(
        F.lit(event_contract_ref).alias("eventContractRef"),
        F.lit(0).cast("long").alias("nonce"),
        col(EPOCH_MS).alias("timestamp"),
        col(KEY_LINK).alias("keyLink"),
        F.lit(None).cast("string").alias("billingId"),
        col(CONSENT).alias("consentLevels"),
    )


def with_pii_columns(df: DataFrame, contract: Contract) -> DataFrame:
    """Copy every PII field (top-level or nested) into a flat `__pii<i>` column to encrypt."""
    return df.select(
        "*", *[field_col(path).alias(pii_column(i)) for i, path in enumerate(contract.pii_names)]
    )


def _rebuild(contract: Contract, leaves: dict[str, Column]) -> list[Column]:
    """The contract's top-level columns with the given field paths replaced by new values;
    nested paths are replaced inside their struct (a null struct stays null)."""
    out = []
    for name in contract.field_names:
        if name in leaves:
            out.append(leaves[name].alias(name))
            continue
        value = col(name)
        for path, leaf in leaves.items():
            parts = split_path(path)
            if len(parts) > 1 and parts[0] == name:
                value = value.withField(".".join(parts[1:]), leaf)
        out.append(value.alias(name))
    return out


def _ciphertext_leaves(contract: Contract) -> dict[str, Column]:
    return {path: col(enc_column(i)) for i, path in enumerate(contract.pii_names)}


def encrypted_rows(
    df: DataFrame, contract: Contract, event_contract_ref: str, carry: Sequence[str] = ()
) -> DataFrame:
    """The encrypted table: contract fields (PII as ciphertext), strmMeta, strmDay; `carry`
    keeps extra bookkeeping columns (e.g. for ordering STRM CSV output)."""
    return df.select(
        *_rebuild(contract, _ciphertext_leaves(contract)),
        strm_meta(event_contract_ref).alias("strmMeta"),
        col(DAY).alias("strmDay"),
        *[col(c) for c in carry],
    )


def derived_rows(
    df: DataFrame,
    contract: Contract,
    event_contract_ref: str,
    consent_type: str,
    levels: Sequence[int],
    mask: dict[str, Callable[[Column], Column]] | None = None,
    carry: Sequence[str] = (),
) -> DataFrame:
    """A derived output: rows whose consent passes the rule, PII fields allowed for the purpose
    in plaintext (others stay ciphertext), then masked fields replaced by their hash.

    `mask` maps a field path to a function of its (derived) value; see hashing.hmac_column."""
    allowed = set(consent_rules.decrypted_fields(contract.pii_levels, consent_type, levels))
    rows = df.where(consent_rules.allows_column(col(CONSENT), consent_type, levels))
    leaves = {
        path: col(pii_column(i)) if path in allowed else col(enc_column(i))
        for i, path in enumerate(contract.pii_names)
    }
    for path, masker in (mask or {}).items():
        leaves[path] = masker(leaves.get(path, field_col(path)))
    return rows.select(
        *_rebuild(contract, leaves),
        strm_meta(event_contract_ref).alias("strmMeta"),
        col(DAY).alias("strmDay"),
        *[col(c) for c in carry],
    )


def rejected_rows(
    df: DataFrame, contract: Contract, event_contract_ref: str, run_id: str
) -> DataFrame:
    """The rejected table: every field as text (PII encrypted; nested fields as JSON), the
    encrypted raw record of malformed lines, the reasons, and where the row came from."""
    rebuilt = df.select(
        *_rebuild(contract, _ciphertext_leaves(contract)),
        *[c for c in df.columns if c.startswith("__")],
        "rowNumber",
    )
    fields = []
    for node in contract.nodes:
        raw = RAW_PREFIX + node.name
        if raw in rebuilt.columns:
            value = col(raw)
        elif node.type == "NODE" or node.repeated:
            value = F.to_json(col(node.name))
        else:
            value = col(node.name).cast("string")
        fields.append(value.alias(node.name))
    return rebuilt.select(
        *fields,
        col(ENC_CORRUPT).alias("rawRecord"),
        col(REASONS).alias("rejectReasons"),
        col("__file").alias("sourceFile"),
        col("rowNumber"),
        strm_meta(event_contract_ref).alias("strmMeta"),
        F.lit(run_id).alias("runId"),
        F.current_timestamp().alias("rejectedAt"),
    )
