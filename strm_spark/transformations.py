"""DataFrame -> DataFrame steps of the batch job. Pure: no reading, writing or actions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from . import consent as consent_rules
from .contract import Contract
from .io import CORRUPT
from .timestamps import epoch_millis, parse_event_time, utc_day

if TYPE_CHECKING:
    from .masterkey import MasterKey

REASONS = "__reasons"
EPOCH_MS = "__epoch_ms"
DAY = "__day"
CONSENT = "__consent"
KEY_VALUE = "__kv"
SUBJECT = "__subject"
RAW_PREFIX = "__raw_"
PLAIN_PREFIX = "__plain_"
KEY_LINK = "__keyLink"
KEYSET = "__keyset"
EXPIRES_AT = "__expiresAt"


def col(name: str) -> Column:
    return F.col(f"`{name}`")


def _reason(cond: Column, text: str) -> Column:
    return F.when(cond, F.lit(text))


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
        reasons.append(_reason(
            col(RAW_PREFIX + node.name).isNotNull() & col(node.name).isNull(),
            f"field '{node.name}' is not a valid {node.type}",
        ))
    return _add_reasons(df, reasons)


def _add_reasons(df: DataFrame, reasons: Sequence[Column]) -> DataFrame:
    existing = col(REASONS) if REASONS in df.columns else F.array().cast("array<string>")
    if not reasons:
        return df.withColumn(REASONS, existing)
    new = F.filter(F.array(*reasons), lambda x: x.isNotNull())
    return df.withColumn(REASONS, F.concat(existing, new))


def with_event_time(df: DataFrame, field: str, pattern: str, default_time_zone: str) -> DataFrame:
    """`__epoch_ms` (epoch milliseconds, truncated) and `__day` (UTC day) of each row."""
    ts = parse_event_time(col(field), pattern, default_time_zone)
    df = df.withColumn(EPOCH_MS, epoch_millis(ts)).withColumn(DAY, utc_day(col(EPOCH_MS)))
    return _add_reasons(df, [
        _reason(col(field).isNull(), f"timestamp field '{field}' is missing"),
        _reason(col(field).isNotNull() & col(EPOCH_MS).isNull(),
                f"timestamp field '{field}' does not match pattern '{pattern}'"),
    ])


def with_consent(df: DataFrame, default_levels: Sequence[int], field: str | None,
                 mapping: Sequence[tuple[str, Sequence[int]]]) -> DataFrame:
    value = col(field) if field else None
    return df.withColumn(CONSENT, consent_rules.consent_levels(value, default_levels, mapping))


def with_validations(df: DataFrame, contract: Contract) -> DataFrame:
    """Required fields and regex validations (a present value must match in full)."""
    reasons = []
    for node in contract.nodes:
        if node.required:
            reasons.append(_reason(col(node.name).isNull(), f"required field '{node.name}' is missing"))
    for rule in contract.validations:
        value = col(rule.field).cast("string")
        reasons.append(_reason(
            value.isNotNull() & ~value.rlike(f"^(?:{rule.pattern})$"),
            f"field '{rule.field}' does not match regex '{rule.pattern}'",
        ))
    return _add_reasons(df, reasons)


def with_malformed_records(df: DataFrame) -> DataFrame:
    """A record the reader could not split into fields is rejected for that reason alone; its
    fields are unreliable (a PII value may sit in a non-PII column), so they are cleared and only
    the encrypted raw record is kept."""
    malformed = col(CORRUPT).isNotNull()
    reason = F.array(F.lit("malformed record (wrong number of fields or bad quoting)"))
    cleared = [
        F.when(malformed, F.lit(None).cast(df.schema[c].dataType)).otherwise(col(c)).alias(c)
        if not c.startswith("__") or c.startswith(RAW_PREFIX) or c in (EPOCH_MS, DAY)
        else col(c)
        for c in df.columns
    ]
    return df.select(*cleared).withColumn(REASONS, F.when(malformed, reason).otherwise(col(REASONS)))


def with_subject(df: DataFrame, field: str | None) -> DataFrame:
    value = F.nullif(col(field).cast("string"), F.lit("")) if field else F.lit(None).cast("string")
    return df.withColumn(SUBJECT, value)


def with_key_value(df: DataFrame, key_field: str) -> DataFrame:
    """`__kv`: the value rows are keyed by ("" for null: one entity); null when the row's day is
    unknown, so those rows fall to the run's quarantine key."""
    value = F.coalesce(col(key_field).cast("string"), F.lit(""))
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


def encrypted_rows(df: DataFrame, contract: Contract, event_contract_ref: str) -> DataFrame:
    """The encrypted table: contract fields (PII as ciphertext), strmMeta, strmDay."""
    return df.select(
        *[col(n) for n in contract.field_names],
        strm_meta(event_contract_ref).alias("strmMeta"),
        col(DAY).alias("strmDay"),
    )


def derived_rows(
    df: DataFrame,
    contract: Contract,
    event_contract_ref: str,
    consent_type: str,
    levels: Sequence[int],
    mask: dict[str, Column] | None = None,
) -> DataFrame:
    """A derived output: rows whose consent passes the rule, PII fields allowed for the purpose
    in plaintext (others stay ciphertext), then masked fields replaced by their hash.

    `mask` maps a field to a function of its (derived) value; see hashing.hmac_column."""
    allowed = set(consent_rules.decrypted_fields(contract.pii_levels, consent_type, levels))
    rows = df.where(consent_rules.allows_column(col(CONSENT), consent_type, levels))
    fields = []
    for name in contract.field_names:
        value = col(PLAIN_PREFIX + name) if name in allowed else col(name)
        fields.append(value.alias(name))
    out = rows.select(*fields, strm_meta(event_contract_ref).alias("strmMeta"), col(DAY).alias("strmDay"))
    for name, masker in (mask or {}).items():
        out = out.withColumn(name, masker(col(name)))
    return out


def rejected_rows(df: DataFrame, contract: Contract, event_contract_ref: str, run_id: str) -> DataFrame:
    """The rejected table: every field as text (PII encrypted), the encrypted raw record of
    malformed lines, the reasons, and where the row came from."""
    fields = []
    for node in contract.nodes:
        raw = RAW_PREFIX + node.name
        value = col(raw) if raw in df.columns else col(node.name)
        if not isinstance(df.schema[raw if raw in df.columns else node.name].dataType, T.StringType):
            value = F.to_json(value) if node.type == "NODE" or node.repeated else value.cast("string")
        fields.append(value.alias(node.name))
    return df.select(
        *fields,
        col(CORRUPT).alias("rawRecord"),
        col(REASONS).alias("rejectReasons"),
        col("__file").alias("sourceFile"),
        col("rowNumber"),
        strm_meta(event_contract_ref).alias("strmMeta"),
        F.lit(run_id).alias("runId"),
        F.current_timestamp().alias("rejectedAt"),
    )


def with_encrypted_fields(df: DataFrame, fields: Sequence[str], keep_plain: Sequence[str] = (),
                          keyset_col: str = KEYSET, master: MasterKey | None = None,
                          key_link_col: str = KEY_LINK) -> DataFrame:
    """Encrypt `fields` in place with each row's keyset (Arrow batches, one Tink primitive per
    key per worker); `keep_plain` fields also keep their plaintext in `__plain_<f>` for derived
    outputs. The keyset column is dropped. Keysets wrapped with `master` are opened on the
    worker with the row's key link (`key_link_col`)."""
    import pyarrow as pa

    from . import crypto

    names = list(fields)
    plain = [f for f in keep_plain if f in names]
    out_fields = [f for f in df.schema.fields if f.name != keyset_col]
    out_fields += [T.StructField(PLAIN_PREFIX + f, T.StringType(), True) for f in plain]
    out_schema = T.StructType(out_fields)
    out_names = [f.name for f in out_schema.fields]

    has_links = key_link_col in df.columns

    def encrypt(batches):
        for batch in batches:
            keysets = batch.column(keyset_col).to_pylist()
            links = batch.column(key_link_col).to_pylist() if has_links else None
            values = [batch.column(n).to_pylist() for n in names]
            encrypted = dict(zip(names, crypto.encrypt_columns(keysets, values, links, master)))
            arrays = []
            for name in out_names:
                if name in encrypted:
                    arrays.append(pa.array(encrypted[name], type=pa.string()))
                elif name.startswith(PLAIN_PREFIX) and name[len(PLAIN_PREFIX):] in plain:
                    arrays.append(batch.column(name[len(PLAIN_PREFIX):]))
                else:
                    arrays.append(batch.column(name))
            yield pa.RecordBatch.from_arrays(arrays, names=out_names)

    return df.mapInArrow(encrypt, out_schema)


def with_decrypted_fields(df: DataFrame, fields: Sequence[str], keyset_col: str = KEYSET,
                          key_link_col: str = KEY_LINK, master: MasterKey | None = None) -> DataFrame:
    """Decrypt the base64 ciphertext `fields` in place with each row's keyset (Arrow batches, one
    Tink primitive per key per worker; wrapped keysets opened with `master` and the row's key
    link). The keyset column is dropped; a cell that does not decrypt fails the query without
    showing the cell."""
    import pyarrow as pa

    from . import crypto

    names = [f for f in fields if f in df.columns]
    out_schema = T.StructType([f for f in df.schema.fields if f.name != keyset_col])
    out_names = [f.name for f in out_schema.fields]

    def decrypt(batches):
        for batch in batches:
            keysets = batch.column(keyset_col).to_pylist()
            links = batch.column(key_link_col).to_pylist()
            values = [batch.column(n).to_pylist() for n in names]
            plain = dict(zip(names, crypto.decrypt_columns(keysets, values, links, master)))
            arrays = [pa.array(plain[n], type=pa.string()) if n in plain else batch.column(n) for n in out_names]
            yield pa.RecordBatch.from_arrays(arrays, names=out_names)

    return df.mapInArrow(decrypt, out_schema)
