"""The access export of one data subject: their rows decrypted, a manifest, files owner-only."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from strm_spark import columns as cols
from strm_spark.config.model import JobConfig
from strm_spark.contract.model import Contract, field_col
from strm_spark.errors import SubjectsError
from strm_spark.keys.store import KeyStore
from strm_spark.subjects._common import (
    _decrypted,
    _exists,
    _has_path,
    _iso,
    _links_of,
    _meta,
    _read_pinned,
    _store,
)
from strm_spark.subjects.quarantine import _quarantine_keys, _subject_rejected_rows

EXPORT_FORMATS = ("jsonl", "csv")


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
    out_dir = _check_request(config, out, fmt)
    store = _store(spark, config, need_master=True)
    links = _links_of(spark, config, [subject])
    keys, keys_df = _subject_keys(spark, store, links)
    days = sorted({k["day"] for k in keys if k["day"] is not None})
    enc_rows, enc_table = _encrypted_rows(spark, config, keys_df, subject, days, fmt)
    rej_rows, rej_table = _rejected_rows(spark, config, store, keys_df, subject, fmt)
    results = {"encrypted": enc_rows, "rejected": rej_rows}
    files, digests = _write_files(out_dir, config.contract, results, fmt)
    time_range = _time_range(enc_rows + rej_rows)
    present = {k["keyLink"] for k in keys}
    without_key = sorted({link for _, link in links} - present)
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
        "key_links_without_key": without_key,
        "tables": [enc_table, rej_table],
        "rows": {name: len(rows) for name, rows in results.items()},
        "time_range": {"from": time_range[0], "to": time_range[1]} if time_range else None,
        "files": {f: {"rows": files[f], "sha256": digests[f]} for f in files},
        "notes": _MANIFEST_NOTES,
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
        len(without_key),
        [d.isoformat() for d in days],
        time_range,
        str(manifest_path),
    )


_MANIFEST_NOTES = [
    "Rows are decrypted with the subject's keys; strmMeta.timestamp is epoch milliseconds (UTC).",
    "Rejected rows whose day could not be read are encrypted with a per-run quarantine key shared "
    "by everyone in that run; they are included when their decrypted subject field, or their raw "
    "record (for records that could not be split into fields), names this subject.",
]
_REJECTED_COLUMNS = [
    "rawRecord",
    "rejectReasons",
    "sourceFile",
    "rowNumber",
    "strmMeta",
    "runId",
    "rejectedAt",
]


def _check_request(config: JobConfig, out: str | Path, fmt: str) -> Path:
    """The export folder, once the format, the contract and the folder allow an export."""
    if fmt not in EXPORT_FORMATS:
        raise SubjectsError(
            f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}"
        )
    if not config.contract.data_subject_field:
        raise SubjectsError(
            f"{config.config_path}: the contract has no data_subject_field, so there are no data subjects"
        )
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SubjectsError(f"export folder {out_dir} exists and is not empty; choose a new one")
    return out_dir


def _subject_keys(
    spark: SparkSession, store: KeyStore, links: list[tuple[str, str]]
) -> tuple[list[Any], DataFrame | None]:
    """The subject's row keys: (keyLink, day, expiresAt) rows on the driver, and the keysets as
    a DataFrame that stays in Spark (joined on the workers)."""
    if not links or not store.exists():
        return [], None
    link_df = spark.createDataFrame([(k,) for _, k in links], "keyLink string")
    found = store.keysets(link_df, cleartext=True).where(F.col("kind") == "row")
    keys = found.select("keyLink", "day", "expiresAt").collect()
    if not keys:
        return [], None
    keys_df = found.select(
        F.col("keyLink").alias(cols.KEY_LINK), F.col("keyset").alias(cols.KEYSET)
    )
    return keys, keys_df


def _encrypted_rows(
    spark: SparkSession,
    config: JobConfig,
    keys_df: DataFrame | None,
    subject: str,
    days: list[date],
    fmt: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The subject's rows of the encrypted table, read from the files of their days only
    (partitions, or strmDay statistics), and the table's manifest entry."""
    path, table_fmt = config.encrypted.path, config.encrypted.format
    rows: list[dict[str, Any]] = []
    version = None
    if days and keys_df is not None and _exists(spark, path, table_fmt):
        enc, version = _read_pinned(spark, path, table_fmt)
        enc = enc.where(F.col("strmDay").isin(days))
        rows = _decrypted_subject_rows(enc, keys_df, config.contract, subject, order="strmDay")
    entry = {
        "table": "encrypted",
        "path": path,
        "format": table_fmt,
        "version": version,
        "partitions_read": [d.isoformat() for d in days],
        "rows": len(rows),
        "file": f"encrypted.{fmt}",
    }
    return rows, entry


def _rejected_rows(
    spark: SparkSession,
    config: JobConfig,
    store: KeyStore,
    keys_df: DataFrame | None,
    subject: str,
    fmt: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The subject's rejected rows: under their key links, and quarantined rows (under a per-run
    key shared by many people) whose decrypted subject field or raw record is theirs."""
    path, table_fmt = config.rejected.path, config.rejected.format
    rows: list[dict[str, Any]] = []
    version = None
    if _exists(spark, path, table_fmt):
        rej, version = _read_pinned(spark, path, table_fmt)
        if keys_df is not None:
            rows = _decrypted_subject_rows(
                rej, keys_df, config.contract, subject, order="rowNumber"
            )
        quarantined = (
            _subject_rejected_rows(spark, config, _quarantine_keys(config, store), [subject])
            if store.exists()
            else None
        )
        if quarantined is not None:
            rows += [
                r.asDict(recursive=True)
                for r in quarantined.orderBy("runId", "sourceFile", "rowNumber").collect()
            ]
    entry = {
        "table": "rejected",
        "path": path,
        "format": table_fmt,
        "version": version,
        "partitions_read": None,
        "rows": len(rows),
        "file": f"rejected.{fmt}",
    }
    return rows, entry


def _write_files(
    out_dir: Path, contract: Contract, results: dict[str, list[dict[str, Any]]], fmt: str
) -> tuple[dict[str, int], dict[str, str]]:
    """One file per table in a new owner-only folder: rows and SHA-256 per file."""
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    columns = {
        "encrypted": list(contract.field_names) + ["strmMeta", "strmDay"],
        "rejected": list(contract.field_names) + _REJECTED_COLUMNS,
    }
    files: dict[str, int] = {}
    digests: dict[str, str] = {}
    for name, rows in results.items():
        file = f"{name}.{fmt}"
        digests[file] = _write_rows(out_dir / file, rows, columns[name], fmt)
        files[file] = len(rows)
    return files, digests


def _time_range(rows: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The first and last event time of the exported rows (ISO, UTC)."""
    stamps = [
        r["strmMeta"]["timestamp"]
        for r in rows
        if r.get("strmMeta") and r["strmMeta"].get("timestamp") is not None
    ]
    if not stamps:
        return None

    def fmt_ms(ms: int) -> str:
        return _iso(datetime.fromtimestamp(ms / 1000, tz=UTC))

    return fmt_ms(min(stamps)), fmt_ms(max(stamps))


def _decrypted_subject_rows(
    df: DataFrame, keys_df: DataFrame, contract: Contract, subject: str, order: str
) -> list[dict[str, Any]]:
    """Rows of `df` under the (cleartext) keys in `keys_df`, decrypted, only those of `subject`."""
    columns = df.columns
    joined = df.join(F.broadcast(keys_df), _meta(df, "keyLink") == F.col(cols.KEY_LINK), "inner")
    plain = _decrypted(joined, contract)
    subject_col = field_col(contract.data_subject_field)
    mine = (
        plain.where(subject_col.cast("string") == F.lit(subject))
        if _has_path(df, contract.data_subject_field)
        else plain
    )
    mine = mine.select(*[F.col(f"`{c}`") for c in columns]).orderBy(
        _meta(df, "timestamp"), F.col(f"`{order}`")
    )
    return [r.asDict(recursive=True) for r in mine.collect()]
