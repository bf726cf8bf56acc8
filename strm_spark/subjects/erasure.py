"""Data subjects: list, key links, access export, forget (crypto-shredding) and purge-expired.

All requests act on one job config's key group (`keys.group_id`) and its outputs. Forget runs
four idempotent steps, in this order, so that a crash and a rerun complete it:

1. delete the subjects' keys from the key store (their encrypted rows become unreadable);
2. delete the rows of those key links from every derived table and the rejected table, and the
   subjects' rejected rows under quarantine keys (found by decrypting them; the shared keys stay),
   then the subjects' entries in the data subjects table (last: they are how a rerun finds the
   links);
3. physically purge the key store, derived, rejected and data subjects tables that have anything
   to purge: REORG ... APPLY (PURGE) where deletion vectors are on, then VACUUM with zero
   retention. The encrypted table is never touched: without the keys its ciphertext is useless,
   and it keeps its time travel;
4. append an audit record (keyed hashes of the subject ids, never the ids, and the counts).

Subject ids never appear in logs, reports or Delta predicates (deletes are MERGEs against a
small source DataFrame, so no value is written into `_delta_log`).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from strm_spark import private
from strm_spark.config.load import JobConfig
from strm_spark.contract.parse import Contract, split_path
from strm_spark.crypto.envelope import load_master_key
from strm_spark.delta import erase as ops
from strm_spark.delta import sql_string
from strm_spark.delta.outputs import path_exists, read_table
from strm_spark.errors import SubjectsError
from strm_spark.keys import tombstones
from strm_spark.keys.store import KeyStore
from strm_spark.pipeline import transforms as tf
from strm_spark.pipeline.read import raw_record_values, source_delimiter
from strm_spark.sql.functions import decrypt_column, with_decrypted_pii
from strm_spark.subjects import audit

log = logging.getLogger("strm_spark")

EXPORT_FORMATS = ("jsonl", "csv")
MAX_PAGE_SIZE = 10_000


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _subjects_df(spark: SparkSession, subjects: Iterable[str]) -> DataFrame:
    """The requested ids as a tiny DataFrame: joined against, never inlined as literals (a
    literal would show in query plans, logs and the Spark UI)."""
    ids = sorted({s for s in subjects})
    return spark.createDataFrame([(s,) for s in ids], "dataSubject string")


def _data_subjects(
    spark: SparkSession, config: JobConfig, version: int | None = None
) -> DataFrame | None:
    path = config.data_subjects.path
    if not ops.is_delta(spark, path):
        return None
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(path).where(F.col("groupId") == F.lit(config.group_id))


def _store(spark: SparkSession, config: JobConfig, need_master: bool = False) -> KeyStore:
    master = load_master_key(config.master_key) if (need_master and config.master_key) else None
    store = KeyStore(spark, config.key_store, master)
    if need_master:
        store.check_master_key()
    return store


def _links_of(
    spark: SparkSession, config: JobConfig, subjects: Sequence[str]
) -> list[tuple[str, str]]:
    """(dataSubject, keyLink) entries of `subjects` in the job's group."""
    ds = _data_subjects(spark, config)
    if ds is None or not subjects:
        return []
    rows = (
        ds.join(F.broadcast(_subjects_df(spark, subjects)), "dataSubject")
        .select("dataSubject", "keyLink")
        .distinct()
        .collect()
    )
    return [(r["dataSubject"], r["keyLink"]) for r in rows]


def _meta(df: DataFrame, name: str) -> Column:
    """`strmMeta.<name>` of a Delta/Parquet table, or the flattened column of a CSV one."""
    flat = f"strmMeta.{name}"
    return F.col(f"`{flat}`") if flat in df.columns else F.col("strmMeta").getField(name)


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        v = value if value.tzinfo else value.replace(tzinfo=UTC)
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(type(value).__name__)


# ---------------------------------------------------------------------------------------------
# list


@dataclass(frozen=True)
class SubjectPage:
    """One page of data subject ids, sorted, and the token of the next page (None at the end)."""

    subjects: tuple[str, ...]
    next_page_token: str | None


def _token_check(config: JobConfig) -> str:
    return hashlib.sha256(f"{config.data_subjects.path}\0{config.group_id}".encode()).hexdigest()[
        :12
    ]


def _encode_token(config: JobConfig, version: int, offset: int) -> str:
    raw = json.dumps({"v": version, "o": offset, "c": _token_check(config)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(config: JobConfig, token: str) -> tuple[int, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        version, offset, check = int(raw["v"]), int(raw["o"]), raw["c"]
    except Exception:
        raise SubjectsError("invalid page token; list again without --page-token") from None
    if check != _token_check(config) or version < 0 or offset < 0:
        raise SubjectsError(
            "the page token belongs to another job's data subjects; list again without --page-token"
        )
    return version, offset


def list_subjects(
    spark: SparkSession, config: JobConfig, page_size: int = 100, page_token: str | None = None
) -> SubjectPage:
    """A page of the group's data subject ids, in order. Pages read the table version of the
    first page (Delta time travel), so paging is stable while jobs add subjects; the token is
    opaque and holds no subject id."""
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise SubjectsError(f"page size must be between 1 and {MAX_PAGE_SIZE:,}, got {page_size}")
    path = config.data_subjects.path
    if not ops.is_delta(spark, path):
        if page_token:
            raise SubjectsError(
                f"no data subjects table at {path}; list again without --page-token"
            )
        return SubjectPage((), None)
    if page_token:
        version, offset = _decode_token(config, page_token)
    else:
        version, offset = ops.version(spark, path), 0
    try:
        ds = _data_subjects(spark, config, version)
        assert ds is not None
        rows = (
            ds.select("dataSubject")
            .distinct()
            .orderBy("dataSubject")
            .offset(offset)
            .limit(page_size + 1)
            .collect()
        )
    except Exception:
        if not page_token:
            raise
        raise SubjectsError(
            f"version {version} of the data subjects table is no longer readable (a forget or "
            "purge-expired removed its files since the first page); list again without --page-token"
        ) from None
    ids = tuple(r["dataSubject"] for r in rows[:page_size])
    token = _encode_token(config, version, offset + page_size) if len(rows) > page_size else None
    return SubjectPage(ids, token)


# ---------------------------------------------------------------------------------------------
# keylinks


@dataclass(frozen=True)
class KeyLinkInfo:
    """A key link of a subject: its expiry, and the key's day if the key is still stored."""

    key_link: str
    expires_at: datetime
    day: date | None
    key_present: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "key_link": self.key_link,
            "expiry_time": _iso(self.expires_at),
            "day": _iso(self.day) if self.day else None,
            "key_present": self.key_present,
        }


def key_links(
    spark: SparkSession, config: JobConfig, subjects: Sequence[str]
) -> dict[str, list[KeyLinkInfo]]:
    """Each requested subject's key links (an empty list for an unknown subject), ordered by
    day, as STRM's Data Subjects service answered `{data_subject_id, [{key_link, expiry_time}]}`."""
    out: dict[str, list[KeyLinkInfo]] = {s: [] for s in subjects}
    ds = _data_subjects(spark, config)
    if ds is None or not subjects:
        return out
    entries = ds.join(F.broadcast(_subjects_df(spark, subjects)), "dataSubject").select(
        "dataSubject", "keyLink", "expiresAt"
    )
    store = KeyStore(spark, config.key_store)
    if store.exists():
        keys = store.keys().select(
            "keyLink", F.col("day").alias("__day"), F.lit(True).alias("__present")
        )
        entries = entries.join(keys, "keyLink", "left")
    else:
        entries = entries.withColumn("__day", F.lit(None).cast("date")).withColumn(
            "__present", F.lit(False)
        )
    for r in entries.collect():
        out[r["dataSubject"]].append(
            KeyLinkInfo(r["keyLink"], r["expiresAt"], r["__day"], bool(r["__present"]))
        )
    for links in out.values():
        links.sort(key=lambda k: (k.day or date.max, k.expires_at, k.key_link))
    return out


# ---------------------------------------------------------------------------------------------
# export


@dataclass
class ExportResult:
    """What an access export wrote (counts and paths only)."""

    out_dir: str
    files: dict[str, int]
    key_links: int
    key_links_without_key: int
    partitions_read: list[str]
    time_range: tuple[str, str] | None
    manifest: str

    def render(self) -> str:
        lines = [
            f"strm-spark export: {self.key_links:,} key links; the encrypted table read for "
            f"{len(self.partitions_read):,} days (files of other days skipped)"
        ]
        for name, rows in self.files.items():
            lines.append(f"  {name:<18} {rows:,} rows")
        if self.time_range:
            lines.append(f"  time range         {self.time_range[0]} .. {self.time_range[1]}")
        if self.key_links_without_key:
            lines.append(
                f"  note: {self.key_links_without_key:,} key links have no key any more "
                "(forgotten or expired); their rows cannot be decrypted"
            )
        lines.append(f"  manifest           {self.manifest}")
        return "\n".join(lines)


def _flat_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row for CSV: struct fields as `parent.child`, lists as JSON text."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                out[f"{name}.{sub}"] = json.dumps(v) if isinstance(v, list) else v
        elif isinstance(value, list):
            out[name] = json.dumps(value, default=_iso)
        else:
            out[name] = value
    return out


def _write_rows(path: Path, rows: list[dict[str, Any]], columns: list[str], fmt: str) -> str:
    """Write rows as JSON lines or CSV (mode 0600: the file holds personal data); sha256 hex."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
        if fmt == "jsonl":
            for r in rows:
                fh.write(json.dumps(r, default=_iso, ensure_ascii=False) + "\n")
        else:
            flat = [_flat_row(r) for r in rows]
            header = list(_flat_row({c: rows[0][c] for c in columns}).keys()) if rows else columns
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
            writer.writeheader()
            for r in flat:
                writer.writerow(
                    {
                        k: (_iso(v) if isinstance(v, (date, datetime, bytes, bytearray)) else v)
                        for k, v in r.items()
                    }
                )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_subject(
    spark: SparkSession, config: JobConfig, subject: str, out: str | Path, fmt: str = "jsonl"
) -> ExportResult:
    """The access request: every row of the encrypted table (and the rejected table) under the
    subject's key links, decrypted, written to `out` (a new folder) with a manifest.

    Reads only the encrypted table's day partitions of those key links. When the key field is
    not the subject field, a key link can also cover other people's rows; only rows whose
    subject field is this subject are exported."""
    if fmt not in EXPORT_FORMATS:
        raise SubjectsError(
            f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}"
        )
    contract = config.contract
    subject_field = contract.data_subject_field
    if not subject_field:
        raise SubjectsError(
            f"{config.config_path}: the contract has no data_subject_field, so there are no data subjects"
        )
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SubjectsError(f"export folder {out_dir} exists and is not empty; choose a new one")
    store = _store(spark, config, need_master=True)

    # Key links of the subject, with their keys (and so their days).
    links = _links_of(spark, config, [subject])
    link_df = spark.createDataFrame([(k,) for _, k in links], "keyLink string")
    keys: list[Any] = []
    keys_df = None
    if links and store.exists():
        # Keysets stay in Spark (joined on the workers); only links and days come to the driver.
        found = store.keysets(link_df, cleartext=True).where(F.col("kind") == "row")
        keys = found.select("keyLink", "day", "expiresAt").collect()
        keys_df = found.select(
            F.col("keyLink").alias(tf.KEY_LINK), F.col("keyset").alias(tf.KEYSET)
        )
    days = sorted({k["day"] for k in keys if k["day"] is not None})

    tables: list[dict[str, Any]] = []
    results: dict[str, list[dict[str, Any]]] = {}

    # The encrypted table: only the files of the subject's days (partitions, or strmDay statistics).
    enc_path, enc_fmt = config.encrypted.path, config.encrypted.format
    enc_rows: list[dict[str, Any]] = []
    enc_version = None
    if days and keys_df is not None and _exists(spark, enc_path, enc_fmt):
        enc, enc_version = _read_pinned(spark, enc_path, enc_fmt)
        enc = enc.where(F.col("strmDay").isin(days))
        enc_rows = _decrypted_subject_rows(enc, keys_df, contract, subject, order="strmDay")
    tables.append(
        {
            "table": "encrypted",
            "path": enc_path,
            "format": enc_fmt,
            "version": enc_version,
            "partitions_read": [d.isoformat() for d in days],
            "rows": len(enc_rows),
            "file": f"encrypted.{fmt}",
        }
    )
    results["encrypted"] = enc_rows

    # The rejected table: rows under the subject's key links, and quarantined rows (under a
    # per-run key shared by many people) whose decrypted subject field or raw record is theirs.
    rej_path, rej_fmt = config.rejected.path, config.rejected.format
    rej_rows: list[dict[str, Any]] = []
    rej_version = None
    if _exists(spark, rej_path, rej_fmt):
        rej, rej_version = _read_pinned(spark, rej_path, rej_fmt)
        if keys and keys_df is not None:
            rej_rows = _decrypted_subject_rows(rej, keys_df, contract, subject, order="rowNumber")
        quarantined = (
            _subject_rejected_rows(spark, config, _quarantine_keys(config, store), [subject])
            if store.exists()
            else None
        )
        if quarantined is not None:
            rej_rows += [
                r.asDict(recursive=True)
                for r in quarantined.orderBy("runId", "sourceFile", "rowNumber").collect()
            ]
    tables.append(
        {
            "table": "rejected",
            "path": rej_path,
            "format": rej_fmt,
            "version": rej_version,
            "partitions_read": None,
            "rows": len(rej_rows),
            "file": f"rejected.{fmt}",
        }
    )
    results["rejected"] = rej_rows

    # Write the files, then the manifest.
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    files: dict[str, int] = {}
    digests: dict[str, str] = {}
    columns = {
        "encrypted": list(contract.field_names) + ["strmMeta", "strmDay"],
        "rejected": list(contract.field_names)
        + [
            "rawRecord",
            "rejectReasons",
            "sourceFile",
            "rowNumber",
            "strmMeta",
            "runId",
            "rejectedAt",
        ],
    }
    for name, rows in results.items():
        file = f"{name}.{fmt}"
        digests[file] = _write_rows(out_dir / file, rows, columns[name], fmt)
        files[file] = len(rows)
    stamps = [
        r["strmMeta"]["timestamp"]
        for r in results["encrypted"] + results["rejected"]
        if r.get("strmMeta") and r["strmMeta"].get("timestamp") is not None
    ]
    time_range = None
    if stamps:

        def fmt_ms(ms: int) -> str:
            return _iso(datetime.fromtimestamp(ms / 1000, tz=UTC))

        time_range = (fmt_ms(min(stamps)), fmt_ms(max(stamps)))
    present = {k["keyLink"] for k in keys}
    manifest = {
        "data_subject_id": subject,
        "job": config.name,
        "group_id": config.group_id,
        "exported_at": _iso(datetime.now(UTC)),
        "format": fmt,
        "key_links": [
            {
                "key_link": k["keyLink"],
                "day": _iso(k["day"]) if k["day"] else None,
                "expiry_time": _iso(k["expiresAt"]),
            }
            for k in sorted(keys, key=lambda k: (k["day"], k["keyLink"]))
        ],
        "key_links_without_key": sorted({link for _, link in links} - present),
        "tables": tables,
        "rows": {name: len(rows) for name, rows in results.items()},
        "time_range": {"from": time_range[0], "to": time_range[1]} if time_range else None,
        "files": {f: {"rows": files[f], "sha256": digests[f]} for f in files},
        "notes": [
            "Rows are decrypted with the subject's keys; strmMeta.timestamp is epoch milliseconds (UTC).",
            "Rejected rows whose day could not be read are encrypted with a per-run quarantine key shared "
            "by everyone in that run; they are included when their decrypted subject field, or their raw "
            "record (for records that could not be split into fields), names this subject.",
        ],
    }
    manifest_path = out_dir / "manifest.json"
    fd = os.open(manifest_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2, default=_iso, ensure_ascii=False)
        fh.write("\n")
    return ExportResult(
        str(out_dir),
        files,
        len(present),
        len(manifest["key_links_without_key"]),
        [d.isoformat() for d in days],
        time_range,
        str(manifest_path),
    )


def _exists(spark: SparkSession, path: str, fmt: str) -> bool:
    if fmt == "delta":
        return ops.is_delta(spark, path)
    return path_exists(spark, path)


def _read_pinned(spark: SparkSession, path: str, fmt: str) -> tuple[DataFrame, int | None]:
    """Read a table; a Delta table at a fixed version, named in the manifest."""
    if fmt != "delta":
        return read_table(spark, path, fmt), None
    v = ops.version(spark, path)
    return spark.read.format("delta").option("versionAsOf", v).load(path), v


def _decrypted_subject_rows(
    df: DataFrame, keys_df: DataFrame, contract: Contract, subject: str, order: str
) -> list[dict[str, Any]]:
    """Rows of `df` under the (cleartext) keys in `keys_df`, decrypted, only those of `subject`."""
    columns = df.columns
    joined = df.join(F.broadcast(keys_df), _meta(df, "keyLink") == F.col(tf.KEY_LINK), "inner")
    plain = _decrypted(joined, contract)
    subject_col = _path_col(contract.data_subject_field)
    mine = (
        plain.where(subject_col.cast("string") == F.lit(subject))
        if _has_path(df, contract.data_subject_field)
        else plain
    )
    mine = mine.select(*[F.col(f"`{c}`") for c in columns]).orderBy(
        _meta(df, "timestamp"), F.col(f"`{order}`")
    )
    return [r.asDict(recursive=True) for r in mine.collect()]


def _decrypted(joined: DataFrame, contract: Contract) -> DataFrame:
    """Every PII field (nested and repeated ones too) and the raw record of a rejected row
    decrypted with the joined cleartext keyset; a cell that does not decrypt fails the query
    without showing it."""
    paths = [p for p in contract.pii_names if _has_path(joined, p)]
    plain = with_decrypted_pii(joined, contract, paths, F.col(tf.KEYSET), strict=True)
    if "rawRecord" in joined.columns:
        plain = plain.withColumn(
            "rawRecord", decrypt_column(F.col("rawRecord"), F.col(tf.KEYSET), strict=True)
        )
    return plain


def _path_col(path: str) -> Column:
    return F.col(".".join(f"`{p}`" for p in split_path(path)))


def _has_path(df: DataFrame, path: str | None) -> bool:
    if not path:
        return False
    dtype: Any = df.schema
    for part in split_path(path):
        if not isinstance(dtype, T.StructType) or part not in dtype.fieldNames():
            return False
        dtype = dtype[part].dataType
    return True


# ---------------------------------------------------------------------------------------------
# Quarantined rejected rows: under a per-run quarantine key shared by everyone whose row had no
# readable day, so not linked to any subject. They are found by decrypting them.


def _raw_record_matcher(
    subjects: frozenset[str], subject_field: str, source_format: str, delimiter: str
):
    """A function telling whether a malformed record's raw text names one of `subjects`: as a
    whole CSV field, or as the subject field's value of a JSON record (else as a quoted string)."""

    def matches(raw: str | None) -> bool:
        values = raw_record_values(raw, source_format, subject_field, delimiter)
        if values is None:  # JSON that does not parse: search its text
            return any(json.dumps(s) in raw for s in subjects)
        return any(v in subjects for v in values)

    return matches


def _quarantine_keys(config: JobConfig, store: KeyStore) -> DataFrame:
    return (
        store.cleartext_keys(config.group_id)
        .where(F.col("kind") == "quarantine")
        .select(F.col("keyLink").alias(tf.KEY_LINK), F.col("keyset").alias(tf.KEYSET))
    )


def _subject_rejected_rows(
    spark: SparkSession, config: JobConfig, keys: DataFrame, subjects: Sequence[str]
) -> DataFrame | None:
    """Rejected rows under `keys` (cleartext; `KEY_LINK`, `KEYSET`) that belong to `subjects`,
    decrypted: by the subject field when the reader could split the record, else by the raw
    record. For keys shared by many people: the group's quarantine keys, and row keys whose
    key-field value other subjects share. The ids travel inside the matching function, never as
    literals in the query plan."""
    contract = config.contract
    subject_field = contract.data_subject_field
    path, fmt = config.rejected.path, config.rejected.format
    if not subjects or not subject_field or not _exists(spark, path, fmt):
        return None
    rejected = read_table(spark, path, fmt)
    if not _has_path(rejected, subject_field):
        return None
    joined = rejected.join(
        F.broadcast(keys), _meta(rejected, "keyLink") == F.col(tf.KEY_LINK), "inner"
    )
    plain = _decrypted(joined, contract)
    wanted = frozenset(subjects)
    raw_matches = _raw_record_matcher(
        wanted, subject_field, config.source.format, source_delimiter(config.source)
    )

    def flag(field_values: pd.Series, raw: pd.Series) -> pd.Series:
        return pd.Series(
            [
                (v is not None and not (isinstance(v, float) and pd.isna(v)) and str(v) in wanted)
                or raw_matches(r if isinstance(r, str) else None)
                for v, r in zip(field_values, raw)
            ],
            dtype=bool,
        )

    match = F.pandas_udf(flag, "boolean")
    mine = plain.where(match(_path_col(subject_field).cast("string"), F.col("rawRecord")))
    return mine.select(*[F.col(f"`{c}`") for c in rejected.columns])


def _others_rows(
    spark: SparkSession,
    config: JobConfig,
    keys: DataFrame,
    subjects: Sequence[str],
    days: Sequence[date],
) -> int:
    """Encrypted and rejected rows under `keys` (shared key links) that belong to other
    subjects than `subjects`: they become unreadable when the keys go. Counted before."""
    subject_field = config.contract.data_subject_field
    wanted = _subjects_df(spark, subjects)
    total = 0
    for path, fmt, pruned in (
        (config.encrypted.path, config.encrypted.format, bool(days)),
        (config.rejected.path, config.rejected.format, False),
    ):
        if not subject_field or not _exists(spark, path, fmt):
            continue
        table = read_table(spark, path, fmt)
        if pruned and "strmDay" in table.columns:
            table = table.where(F.expr(_month_ranges(days, "")))
        joined = table.join(
            F.broadcast(keys), _meta(table, "keyLink") == F.col(tf.KEY_LINK), "inner"
        )
        plain = _decrypted(joined, config.contract) if _has_path(table, subject_field) else None
        if plain is None:
            continue
        owner = _path_col(subject_field).cast("string")
        total += plain.join(
            F.broadcast(wanted), owner == wanted["dataSubject"], "left_anti"
        ).count()
    return total


# ---------------------------------------------------------------------------------------------
# forget and purge-expired


@dataclass
class ErasureReport:
    """What a forget or purge-expired did: counts only, never subject ids."""

    action: str
    audit_id: str
    audit_table: str
    subjects_requested: int = 0
    subjects_found: int = 0
    key_links: int = 0
    shared_key_links: int = 0
    other_subjects: int = 0
    other_subjects_rows_unreadable: int = 0
    tombstones: int = 0
    keys_removed: int = 0
    derived_rows_removed: dict[str, int] = field(default_factory=dict)
    rejected_rows_removed: int = 0
    quarantined_rows_removed: int = 0
    subject_entries_removed: int = 0
    files_rewritten: int = 0
    files_removed: int = 0
    tables_purged: dict[str, dict[str, int]] = field(default_factory=dict)
    expired_before: str | None = None
    completed: bool = False
    stopped_after_step: int | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def derived_total(self) -> int:
        return sum(self.derived_rows_removed.values())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def render(self) -> str:
        if self.action == "forget":
            head = (
                f"strm-spark forget: {self.subjects_requested:,} subject(s) requested, "
                f"{self.subjects_found:,} found, {self.key_links:,} key links"
            )
        else:
            head = (
                f"strm-spark purge-expired: keys expired before {self.expired_before}: "
                f"{self.key_links:,} key links, {self.subjects_found:,} subjects"
            )
        derived = ", ".join(f"{n} {c:,}" for n, c in self.derived_rows_removed.items()) or "none"
        lines = [
            head,
            f"  keys deleted                  {self.keys_removed:,}",
            f"  derived rows deleted          {self.derived_total:,} ({derived})",
            f"  rejected rows deleted         {self.rejected_rows_removed:,}"
            + (
                f" ({self.quarantined_rows_removed:,} under quarantine keys)"
                if self.quarantined_rows_removed
                else ""
            ),
            f"  data subject entries deleted  {self.subject_entries_removed:,}",
            f"  files rewritten (REORG PURGE) {self.files_rewritten:,}",
            f"  files removed (VACUUM)        {self.files_removed:,} in {len(self.tables_purged)} tables",
        ]
        if self.action == "forget":
            lines.append(
                f"  tombstones written            {self.tombstones:,} (later runs drop these subjects' "
                "events from before now)"
            )
        if self.completed:
            lines.append(f"  audit record                  {self.audit_id} in {self.audit_table}")
        else:
            lines.append(
                f"  STOPPED after step {self.stopped_after_step}: run the same command again to complete it"
            )
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in self.step_seconds.items())
        lines.append(f"  wall time                     {self.wall_time_s:.1f} s ({steps})")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


def _require_delta_outputs(config: JobConfig) -> None:
    """Rows can only be deleted from Delta tables: refuse before touching anything."""
    bad = [f"outputs.derived {d.name} ({d.format})" for d in config.derived if d.format != "delta"]
    if config.rejected.format != "delta":
        bad.append(f"outputs.rejected ({config.rejected.format})")
    if config.keys_export is not None:
        bad.append(f"the keys export {config.keys_export.path} (cleartext keysets in a CSV file)")
    if bad:
        raise SubjectsError(
            f"{config.config_path}: forget needs Delta outputs (rows can only be erased from Delta tables) and no "
            f"cleartext copies of keys; these are in the way: "
            f"{', '.join(bad)}. Nothing was changed."
        )


def _purge_tables(spark: SparkSession, config: JobConfig, store: KeyStore) -> list[tuple[str, str]]:
    """The tables step 3 purges (existing ones only); never the encrypted table."""
    tables = [("keys", store.keys_path)]
    tables += [(f"derived {d.name}", d.path) for d in config.derived]
    tables += [("rejected", config.rejected.path), ("data subjects", config.data_subjects.path)]
    return [(name, path) for name, path in tables if ops.is_delta(spark, path)]


def _derived_deletes(
    spark: SparkSession,
    config: JobConfig,
    links: DataFrame,
    days: list[date],
    undated: DataFrame | None,
    report: ErasureReport,
) -> list[Callable[[], None]]:
    """Deletes of derived rows whose strmMeta.keyLink is in `links`, pruned to the calendar
    months of the keys' days (strmDay, never the days themselves); links whose key (and so
    day) is already gone (a rerun after a crash) are matched
    over the whole table. One task per table, to run side by side."""

    def delete(name: str, path: str) -> None:
        removed = 0
        if ops.is_delta(spark, path):
            if days:
                removed += ops.merge_delete(
                    spark,
                    path,
                    links,
                    f"({_month_ranges(days)}) AND t.strmMeta.keyLink = s.keyLink",
                )
            if undated is not None:
                removed += ops.merge_delete(spark, path, undated, "t.strmMeta.keyLink = s.keyLink")
        report.derived_rows_removed[name] = removed

    for d in config.derived:
        report.derived_rows_removed.setdefault(d.name, 0)
    return [lambda d=d: delete(d.name, d.path) for d in config.derived]


def _shared_links(
    spark: SparkSession,
    config: JobConfig,
    ds: DataFrame,
    links: DataFrame,
    subjects: Sequence[str],
    report: ErasureReport,
) -> list[str]:
    """The key links of `links` that other subjects than `subjects` have entries under too. A
    key link covers one key-field value, so only when that is not the subject field can it."""
    if config.contract.key_field == config.contract.data_subject_field:
        return []
    others = (
        ds.join(F.broadcast(links), "keyLink")
        .join(F.broadcast(_subjects_df(spark, subjects)), "dataSubject", "left_anti")
        .select("dataSubject", "keyLink")
        .distinct()
        .collect()
    )
    shared = sorted({r["keyLink"] for r in others})
    report.shared_key_links, report.other_subjects = (
        len(shared),
        len({r["dataSubject"] for r in others}),
    )
    return shared


def _month_ranges(days: Sequence[date], alias: str = "t.") -> str:
    """A strmDay condition that covers `days` by whole calendar months, consecutive months as
    one range. Delta keeps a MERGE's condition in `commitInfo`, where it outlives the erasure:
    months are shared by everyone active in them, where the days would be the subject's own,
    and they still let the statistics on strmDay skip the files of other months."""
    months = sorted({(d.year, d.month) for d in days})
    ranges: list[list[tuple[int, int]]] = []
    for year, month in months:
        if ranges and _next_month(*ranges[-1][1]) == (year, month):
            ranges[-1][1] = (year, month)
        else:
            ranges.append([(year, month), (year, month)])
    return " OR ".join(
        f"({alias}strmDay >= DATE'{date(*lo, 1).isoformat()}' AND {alias}strmDay < "
        f"DATE'{date(*_next_month(*hi), 1).isoformat()}')"
        for lo, hi in ranges
    )


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _rejected_delete(
    spark: SparkSession, config: JobConfig, links: DataFrame, report: ErasureReport
) -> int:
    """Rejected rows whose strmMeta.keyLink is in `links` (the rejected table is not partitioned)."""
    if not ops.is_delta(spark, config.rejected.path):
        return 0
    return ops.merge_delete(spark, config.rejected.path, links, "t.strmMeta.keyLink = s.keyLink")


def _delete_subject_rejected(
    spark: SparkSession, config: JobConfig, keys: DataFrame, subjects: Sequence[str]
) -> int:
    """Delete the rejected rows of `subjects` under shared `keys` (found by decrypting them),
    matched by their key link and place (run, file, row); the keys themselves stay."""
    found = _subject_rejected_rows(spark, config, keys, subjects)
    if found is None:
        return 0
    ids = (
        found.select(_meta(found, "keyLink").alias("keyLink"), "runId", "sourceFile", "rowNumber")
        .distinct()
        .collect()
    )
    if not ids:
        return 0
    source = spark.createDataFrame(
        [tuple(r) for r in ids], "keyLink string, runId string, sourceFile string, rowNumber long"
    )
    return ops.merge_delete(
        spark,
        config.rejected.path,
        source,
        "t.strmMeta.keyLink = s.keyLink AND t.runId <=> s.runId AND t.sourceFile <=> s.sourceFile "
        "AND t.rowNumber <=> s.rowNumber",
    )


def _delete_quarantined(
    spark: SparkSession,
    config: JobConfig,
    store: KeyStore,
    subjects: Sequence[str],
    report: ErasureReport,
    linked: DataFrame | None,
) -> None:
    """Rejected rows of `subjects`: those under their own key links (`linked`), then those under
    quarantine keys, found by decrypting them (the quarantine keys stay: they are shared).
    One task, since both change the rejected table."""
    if linked is not None:
        report.rejected_rows_removed += _rejected_delete(spark, config, linked, report)
    if not store.exists():
        return
    removed = _delete_subject_rejected(spark, config, _quarantine_keys(config, store), subjects)
    report.rejected_rows_removed += removed
    report.quarantined_rows_removed += removed


def _purge(spark: SparkSession, config: JobConfig, store: KeyStore, report: ErasureReport) -> None:
    """Step 3 on every table that may hold files a delete left behind: the ones this request
    deleted from, and any other with removals since its last VACUUM (a crashed earlier erasure,
    an overwrite by a job). A table with nothing pending is skipped: nothing to remove."""
    tables = [
        (name, path)
        for name, path in _purge_tables(spark, config, store)
        if ops.needs_purge(spark, path)
    ]
    results = ops.purge(spark, [path for _, path in tables])
    for name, path in tables:
        counts = results[path]
        report.tables_purged[name] = {
            "files_rewritten": counts.files_rewritten,
            "files_removed": counts.files_removed,
        }
        report.files_rewritten += counts.files_rewritten
        report.files_removed += counts.files_removed


def _audit_record(
    report: ErasureReport,
    config: JobConfig,
    hashes: list[str],
    status: str,
    expired_before: datetime | None = None,
) -> audit.AuditRecord:
    done = status == "completed"
    return audit.AuditRecord(
        action=report.action,
        status=status,
        job=config.name,
        group_id=config.group_id,
        subject_hashes=hashes,
        audit_id=report.audit_id,
        keys_removed=report.keys_removed if done else None,
        derived_rows_removed=report.derived_total if done else None,
        rejected_rows_removed=report.rejected_rows_removed if done else None,
        subject_entries_removed=report.subject_entries_removed if done else None,
        files_rewritten=report.files_rewritten if done else None,
        files_removed=report.files_removed if done else None,
        expired_before=expired_before,
        details={
            "derived_rows_removed": report.derived_rows_removed,
            "tables_purged": report.tables_purged,
            "quarantined_rows_removed": report.quarantined_rows_removed,
            "key_links": report.key_links,
            "shared_key_links": report.shared_key_links,
            "other_subjects": report.other_subjects,
            "other_subjects_rows_unreadable": report.other_subjects_rows_unreadable,
        }
        if done
        else None,
    )


class _Steps:
    """Times the steps of an erasure and stops after a given one (to test crash recovery)."""

    def __init__(self, report: ErasureReport, stop_after: int | None) -> None:
        self.report, self.stop_after = report, stop_after
        self.start = self.last = time.monotonic()

    def done(self, step: int, name: str) -> bool:
        now = time.monotonic()
        self.report.step_seconds[f"{step} {name}"] = round(now - self.last, 2)
        self.report.wall_time_s = round(now - self.start, 2)
        self.last = now
        log.info("%s step %d (%s) done", self.report.action, step, name)
        if self.stop_after is not None and step >= self.stop_after:
            self.report.stopped_after_step = step
            return True
        return False


def forget(
    spark: SparkSession,
    config: JobConfig,
    subjects: Sequence[str],
    *,
    stop_after_step: int | None = None,
) -> ErasureReport:
    """The erasure request for `subjects` (see the module docstring for the four steps).

    Idempotent: rerunning after a crash at any point completes the erasure. A subject that
    does not exist counts 0. `stop_after_step` (1-3) stops early, as a crash would (for tests).
    Files the erasure rewrites stay owner-only on a local file system."""
    try:
        return _forget(spark, config, subjects, stop_after_step)
    finally:
        private.seal(private.job_locations(config))


def _forget(
    spark: SparkSession, config: JobConfig, subjects: Sequence[str], stop_after_step: int | None
) -> ErasureReport:
    _require_delta_outputs(config)
    subjects = sorted({s for s in subjects if s is not None})
    # The master key (if any) opens quarantine keysets in step 2; check it before anything changes.
    store = _store(spark, config, need_master=True)
    report = ErasureReport(
        "forget",
        audit_id=_new_audit_id(),
        audit_table=config.audit,
        subjects_requested=len(subjects),
    )
    hashes = audit.subject_hashes(store.audit_key(config.group_id), subjects)
    audit.append(spark, config.audit, _audit_record(report, config, hashes, "started"))
    # Tombstones first: a job running from now on drops the subjects' earlier events, also
    # from re-delivered files, and a crashed forget has already left them.
    report.tombstones = tombstones.add(
        spark, config.key_store, config.group_id, hashes, datetime.now(UTC)
    )
    steps = _Steps(report, stop_after_step)

    entries = _links_of(spark, config, subjects)
    link_list = sorted({link for _, link in entries})
    report.subjects_found = len({s for s, _ in entries})
    report.key_links = len(link_list)
    links = spark.createDataFrame([(k,) for k in link_list], "keyLink string")
    # Days of the links whose key is still stored; the others are only known by their link.
    dated: dict[str, date] = {}
    if link_list and store.exists():
        dated = {
            r["keyLink"]: r["day"]
            for r in store.keysets(links)
            .where(F.col("kind") == "row")
            .select("keyLink", "day")
            .collect()
        }
    ds = _data_subjects(spark, config)
    shared = (
        _shared_links(spark, config, ds, links, subjects, report)
        if link_list and ds is not None
        else []
    )
    if shared and store.exists():
        # Before the keys go: the other subjects' rows they make unreadable are counted, and
        # this subject's rejected rows under them are found by decrypting (a rerun after a
        # crash in step 1 or later finds none left).
        shared_keys = (
            store.keysets(
                spark.createDataFrame([(k,) for k in shared], "keyLink string"), cleartext=True
            )
            .where(F.col("kind") == "row")
            .select(F.col("keyLink").alias(tf.KEY_LINK), F.col("keyset").alias(tf.KEYSET))
        )
        report.other_subjects_rows_unreadable = _others_rows(
            spark, config, shared_keys, subjects, sorted({dated[k] for k in shared if k in dated})
        )
        removed = _delete_subject_rejected(spark, config, shared_keys, subjects)
        report.rejected_rows_removed += removed
        report.notes.append(
            f"{report.shared_key_links:,} key links also cover {report.other_subjects:,} other subjects (the key "
            f"field is not the subject field): {report.other_subjects_rows_unreadable:,} of their encrypted and "
            "rejected rows can no longer be decrypted, and derived rows under those keys were deleted; their "
            "data subject entries stay, with key_present false"
        )

    # Step 1: the keys (row keys only; quarantine keys are never linked to a subject).
    if link_list and store.exists():
        report.keys_removed = ops.merge_delete(
            spark, store.keys_path, links, "t.keyLink = s.keyLink AND t.kind = 'row'"
        )
    if steps.done(1, "keys"):
        return report

    # Step 2: derived and rejected rows (each table its own task, side by side), then the data
    # subjects entries.
    tasks: list[Callable[[], None]] = []
    if link_list:
        days = sorted(set(dated.values()))
        dated_links = spark.createDataFrame([(k,) for k in sorted(dated)], "keyLink string")
        undated = [k for k in link_list if k not in dated]
        undated_df = (
            spark.createDataFrame([(k,) for k in undated], "keyLink string") if undated else None
        )
        tasks += _derived_deletes(spark, config, dated_links, days, undated_df, report)
    else:
        report.derived_rows_removed = {d.name: 0 for d in config.derived}
    own = [k for k in link_list if k not in set(shared)]
    own_df = spark.createDataFrame([(k,) for k in own], "keyLink string") if own else None
    tasks.append(lambda: _delete_quarantined(spark, config, store, subjects, report, own_df))
    ops.in_parallel(tasks)
    if link_list and ds is not None:
        # The subjects' own entries only: other subjects sharing a key link keep theirs.
        mine = spark.createDataFrame(sorted(entries), "dataSubject string, keyLink string")
        report.subject_entries_removed = ops.merge_delete(
            spark,
            config.data_subjects.path,
            mine,
            f"t.keyLink = s.keyLink AND t.dataSubject = s.dataSubject AND t.groupId = '{_sql_str(config.group_id)}'",
        )
    if steps.done(2, "rows"):
        return report

    # Step 3: physical purge, also when nothing was deleted now (a rerun after a crash finds
    # nothing left to delete but may still have files to remove).
    _purge(spark, config, store, report)
    if steps.done(3, "purge"):
        return report

    # Step 4: the audit record.
    report.completed = True
    audit.append(spark, config.audit, _audit_record(report, config, hashes, "completed"))
    steps.done(4, "audit")
    return report


def purge_expired(
    spark: SparkSession,
    config: JobConfig,
    now: datetime | None = None,
    *,
    stop_after_step: int | None = None,
) -> ErasureReport:
    """Delete and physically purge the group's keys whose expiresAt is at or before `now`; see
    `_purge_expired`. Files it rewrites stay owner-only on a local file system."""
    try:
        return _purge_expired(spark, config, now, stop_after_step)
    finally:
        private.seal(private.job_locations(config))


def _purge_expired(
    spark: SparkSession, config: JobConfig, now: datetime | None, stop_after_step: int | None
) -> ErasureReport:
    """Delete and physically purge the group's keys whose expiresAt is at or before `now`
    (default: the current time), with the data subjects entries, derived rows and rejected
    rows of their key links; audit record as for forget.

    The key store is changed last (rows first, then keys): the expired keys are how a rerun
    after a crash finds the links whose rows are still to be deleted."""
    _require_delta_outputs(config)
    cutoff = now or datetime.now(UTC)
    cutoff = cutoff if cutoff.tzinfo else cutoff.replace(tzinfo=UTC)
    cutoff = cutoff.astimezone(UTC)
    cutoff_col = F.timestamp_micros(F.lit(_epoch_micros(cutoff)))
    store = KeyStore(spark, config.key_store)
    report = ErasureReport(
        "purge-expired",
        audit_id=_new_audit_id(),
        audit_table=config.audit,
        expired_before=_iso(cutoff),
    )
    audit_key = store.audit_key(config.group_id)
    audit.append(spark, config.audit, _audit_record(report, config, [], "started", cutoff))
    steps = _Steps(report, stop_after_step)

    expired = None
    days: list[date] = []
    if store.exists():
        expired = (
            store.keys(config.group_id)
            .where(F.col("expiresAt") <= cutoff_col)
            .select("keyLink", "day", "kind")
            .persist()
        )
        summary = expired.agg(F.count("*").alias("n"), F.collect_set("day").alias("days")).first()
        report.key_links = int(summary["n"])
        days = sorted(d for d in summary["days"] if d is not None)

    hashes: list[str] = []
    ds = _data_subjects(spark, config)
    # SQL: a group id and a cut-off time, no personal data (Delta keeps it in commitInfo).
    expired_in_group = (
        f"groupId = {sql_string(config.group_id)} "
        f"AND expiresAt <= timestamp_micros({_epoch_micros(cutoff)})"
    )
    try:
        # Step 1: rows of the expired links: derived, rejected, then the data subjects entries
        # (an entry carries its key's expiresAt, so a cut-off finds them without the keys).
        if expired is not None and report.key_links:
            tasks = _derived_deletes(
                spark,
                config,
                expired.where(F.col("kind") == "row").select("keyLink"),
                days,
                None,
                report,
            )
            rejected: list[int] = []
            tasks.append(
                lambda: rejected.append(
                    _rejected_delete(spark, config, expired.select("keyLink"), report)
                )
            )
            ops.in_parallel(tasks)
            report.rejected_rows_removed += sum(rejected)
        else:
            report.derived_rows_removed = {d.name: 0 for d in config.derived}
        if ds is not None:
            subjects = [
                r["dataSubject"]
                for r in ds.where(F.col("expiresAt") <= cutoff_col)
                .select("dataSubject")
                .distinct()
                .collect()
            ]
            report.subjects_found = len(subjects)
            hashes = audit.subject_hashes(audit_key, subjects)
            if subjects:
                report.subject_entries_removed = ops.delete_where(
                    spark, config.data_subjects.path, expired_in_group
                )
        if steps.done(1, "rows"):
            return report

        # Step 2: the expired keys.
        if expired is not None and report.key_links:
            report.keys_removed = ops.delete_where(spark, store.keys_path, expired_in_group)
        if steps.done(2, "keys"):
            return report
    finally:
        if expired is not None:
            expired.unpersist()

    # Step 3: physical purge; step 4: audit.
    _purge(spark, config, store, report)
    if steps.done(3, "purge"):
        return report
    report.completed = True
    audit.append(spark, config.audit, _audit_record(report, config, hashes, "completed", cutoff))
    steps.done(4, "audit")
    return report


def _new_audit_id() -> str:
    import uuid

    return uuid.uuid4().hex


def _sql_str(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _epoch_micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def parse_timestamp(text: str) -> datetime:
    """`--now`: an ISO date or date-time; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SubjectsError(
            f"--now: expected an ISO date or date-time like 2030-01-01T00:00:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def read_subject_ids(values: Sequence[str], from_file: str | None) -> list[str]:
    """Subject ids from the command line and/or a file ('-' for stdin), one per line; keeping
    ids out of argv keeps them out of shell history and process listings."""
    ids = [v for v in values if v]
    if from_file:
        import sys

        text = sys.stdin.read() if from_file == "-" else Path(from_file).read_text(encoding="utf-8")
        ids += [line.strip() for line in text.splitlines() if line.strip()]
    if not ids:
        raise SubjectsError("no subject ids given (as arguments or with --from-file)")
    return ids


__all__ = [
    "ErasureReport",
    "ExportResult",
    "KeyLinkInfo",
    "SubjectPage",
    "export_subject",
    "forget",
    "key_links",
    "list_subjects",
    "parse_timestamp",
    "purge_expired",
    "read_subject_ids",
]
