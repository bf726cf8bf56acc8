"""The batch job: source + contract in; encrypted, keys, data subjects, derived, rejected out."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from delta.tables import DeltaTable
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from . import consent as consent_rules
from . import transformations as tf
from .config import DerivedConfig, JobConfig, OutputConfig
from .errors import DataError, StrmSparkError
from .hashing import hmac_column, masker_for
from .io import BLOCK, CORRUPT, FILE, ROW_ID, read_source
from .incremental import FileLog, list_source_files
from .keystore import KeyStore
from .masterkey import load_master_key
from .sql import compact_keyset_column, resolve_engine
from ._delta_ops import inserted_rows
from .tables import create_delta_table, retry_on_conflict, write_strm_csv, write_table

log = logging.getLogger("strm_spark")

DATA_SUBJECTS_SCHEMA = T.StructType([
    T.StructField("dataSubject", T.StringType(), False),
    T.StructField("keyLink", T.StringType(), False),
    T.StructField("groupId", T.StringType(), False),
    T.StructField("expiresAt", T.TimestampType(), False),
    T.StructField("createdAt", T.TimestampType(), False),
])


@dataclass
class RunSummary:
    """What a run did; printed at the end and written as JSON next to the outputs."""

    job: str
    run_id: str
    started_at: str
    source: str
    batch: dict[str, object] | None = None  # incremental runs: id, files, resumed, mode
    rows_read: int = 0
    rows_encrypted: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    keys_needed: int = 0
    keys_created: int = 0
    keys_reused: int = 0
    quarantine_key: bool = False
    derived_rows: dict[str, int] = field(default_factory=dict)
    data_subject_links_added: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    wall_time_s: float = 0.0
    rows_per_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def render(self) -> str:
        lines = [
            f"strm-spark run summary: job {self.job} (run {self.run_id})",
            f"  source            {self.source}",
        ]
        if self.batch is not None:
            lines.append(f"  batch             {self.batch['id']}: {self.batch['files']:,} new file(s)"
                         + (" (resumed after an unfinished run)" if self.batch["resumed"] else "")
                         + (" (reprocessing every file, outputs overwritten)" if self.batch["mode"] == "overwrite" else ""))
        lines += [
            f"  rows read         {self.rows_read:,}",
            f"  rows encrypted    {self.rows_encrypted:,}",
            f"  rows rejected     {self.rows_rejected:,}",
        ]
        for reason, count in sorted(self.rejected_by_reason.items(), key=lambda kv: -kv[1]):
            lines.append(f"      {count:>9,}  {reason}")
        lines += [
            f"  keys              {self.keys_needed:,} used: {self.keys_created:,} created, "
            f"{self.keys_reused:,} reused" + (" (+1 quarantine key)" if self.quarantine_key else ""),
            f"  data subject links added {self.data_subject_links_added:,}",
        ]
        for name, count in self.derived_rows.items():
            lines.append(f"  derived {name:<10} {count:,} rows")
        lines.append(f"  wall time         {self.wall_time_s:.1f} s ({self.rows_per_s:,.0f} rows/s)")
        lines.append("  outputs:")
        for name, path in self.outputs.items():
            lines.append(f"    {name:<22} {path}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


# Up to this many (key value, day) pairs per run, keysets are broadcast to the workers.
_BROADCAST_KEYS = 200_000


class _Progress:
    """One log line per stage, with the seconds the stage took."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.last = time.monotonic()

    def __call__(self, step: int, message: str, *args: object) -> None:
        now = time.monotonic()
        log.info(f"[{step}/{self.total}] {message} (%.1f s)", *args, now - self.last)
        self.last = now


def _write_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write a small text file through Hadoop's FileSystem, so cloud URIs work too."""
    jvm = spark.sparkContext._jvm
    path = jvm.org.apache.hadoop.fs.Path(uri)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    out = fs.create(path, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def _row_numbers(src: DataFrame) -> DataFrame:
    """(file, row id) -> 1-based record number in its file (header not counted).

    Rows of one file split are read in order by one task, so their monotonically increasing
    ids are consecutive; the offsets of earlier splits come from a small aggregate."""
    blocks = (src.groupBy(FILE, BLOCK).agg(F.min(ROW_ID).alias("first_id"), F.count("*").alias("n"))
              .collect())
    offsets = []
    for file in {b[FILE] for b in blocks}:
        before = 0
        for b in sorted((b for b in blocks if b[FILE] == file), key=lambda b: b[BLOCK]):
            offsets.append((file, b[BLOCK], b["first_id"], before))
            before += b["n"]
    return src.sparkSession.createDataFrame(
        offsets, f"{FILE} string, {BLOCK} long, first_id long, before long"
    )


_HEADER = re.compile(r"CSV header does not conform to the schema\.\s*Header: (?P<header>.*?)\s*Schema: "
                     r"(?P<schema>.*?)\s*Expected: (?P<expected>.*?) but found: (?P<found>.*?)\s*CSV file: (?P<file>\S+)",
                     re.S)
_HEADER_LENGTH = re.compile(r"Number of column in CSV header is not equal to number of fields in the schema:"
                            r"\s*Header length: (?P<header>\d+), schema size: (?P<schema>\d+)\s*CSV file: (?P<file>\S+)")


def _as_data_error(exc: Exception) -> DataError | None:
    """Translate Spark read failures we know into a clear DataError naming the file."""
    m = _HEADER.search(str(exc))
    if m:
        return DataError(
            f"{m['file']}: the CSV header does not match the contract's fields "
            f"(column {m['expected']!r} expected, {m['found']!r} found; header: {m['header']}); "
            "fix the file or the contract"
        )
    m = _HEADER_LENGTH.search(str(exc))
    if m:
        return DataError(
            f"{m['file']}: the CSV header has {m['header']} columns but the contract has "
            f"{m['schema']} fields; fix the file or the contract"
        )
    return None


def run_job(spark: SparkSession, config: JobConfig, *, run_id: str | None = None,
            reprocess: bool = False, engine: str = "auto") -> RunSummary:
    """Run the batch job described by `config` on `spark`. With `source.incremental`, only
    files no earlier run processed (all of them with `reprocess`, outputs overwritten).
    `engine`: where cells are encrypted: 'jvm' (strm-spark's UDF jar, `make udf`), 'python'
    (Arrow UDFs), or 'auto' (the JVM when the jar is on the class path); the ciphertext is the
    same."""
    try:
        return _run(spark, config, run_id, reprocess, engine)
    except StrmSparkError:
        raise
    except Exception as exc:
        translated = _as_data_error(exc)
        if translated is not None:
            raise translated from None
        raise


def _run(spark: SparkSession, config: JobConfig, run_id: str | None, reprocess: bool, engine: str) -> RunSummary:
    started = time.monotonic()
    contract = config.contract
    mode, txn, paths = config.write_mode, None, None
    batch, files = None, None
    if config.source.incremental:
        files = FileLog(spark, f"{config.summary_dir}/files", config.name)
        batch = files.next_batch(list_source_files(spark, config.source.path), reprocess)
        if batch is not None:
            run_id, mode, txn, paths = batch.run_id, batch.mode, files.txn(batch), batch.paths
    run_id = run_id or uuid.uuid4().hex[:12]
    summary = RunSummary(config.name, run_id, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         config.source.path)
    if config.source.incremental and batch is None:
        summary.notes.append("no new files in the source: nothing to do")
        return _finish(spark, config, summary, started)
    if batch is not None:
        summary.batch = {"id": batch.batch_id, "files": len(batch.files), "resumed": batch.resumed, "mode": mode}
        if batch.resumed and reprocess:
            summary.notes.append("an unfinished batch was completed first; run again with --reprocess")
    mask_seed = config.masking_seed.resolve() if config.masking_seed else None
    # The master key is read and checked against the key store before anything is written.
    master = load_master_key(config.master_key) if config.master_key else None
    progress = _Progress(6)
    # The CSV reader only flags malformed records reliably when it parses every column.
    spark.conf.set("spark.sql.csv.parser.columnPruning.enabled", "false")

    log.info("job %s (run %s): %s source %s, contract %s", config.name, run_id, config.source.format,
             config.source.path, contract.source)
    # Cells are encrypted in the JVM when strm-spark's UDF jar is on the class path (`make
    # udf`; local sessions load it), else in Arrow UDFs on the Python workers.
    jvm = resolve_engine(spark, engine) == "jvm"
    store = KeyStore(spark, config.key_store, master)
    cleartext_keysets = store.check_master_key()
    if master is None:
        summary.notes.append("keysets in the key store are stored in cleartext; "
                             "set keys.master_key to encrypt them at rest")
    elif cleartext_keysets:
        summary.notes.append(f"{cleartext_keysets:,} keysets in the key store were stored in cleartext "
                             f"before keys.master_key was set; new keysets are encrypted with {master.id}")
    store.ensure()
    hash_key = store.hash_key(config.group_id)
    progress(1, "key store ready: %s", store.location)

    charset = config.source.charset
    rows = (
        read_source(spark, config.source, contract, paths)
        .transform(lambda df: tf.with_undecodable_text(df, contract, charset)
                   if config.source.format == "csv" else df)
        .transform(tf.with_typed_fields, contract)
        .transform(tf.with_event_time, config.timestamp.field, config.timestamp.pattern,
                   config.timestamp.default_time_zone)
        .transform(tf.with_consent, config.consent.default_levels, config.consent.extractor_field,
                   config.consent.mapping)
        .transform(tf.with_validations, contract)
        .transform(tf.with_malformed_records, charset)
        .transform(tf.with_subject, contract.data_subject_field)
        .transform(tf.with_key_value, contract.key_field)
        .transform(tf.with_pii_columns, contract)
    ).persist(StorageLevel.MEMORY_AND_DISK)

    key_cache = None
    try:
        # One aggregate over all rows: the (key value, day) pairs that need a key, and counts.
        pairs = (rows.groupBy(tf.KEY_VALUE, tf.DAY)
                 .agg(F.count("*").alias("n"), F.count_if(F.size(tf.REASONS) > 0).alias("rejected"))
                 .persist(StorageLevel.MEMORY_AND_DISK))
        totals = pairs.agg(
            F.coalesce(F.sum("n"), F.lit(0)).alias("rows"),
            F.coalesce(F.sum("rejected"), F.lit(0)).alias("rejected"),
            F.count("*").alias("pairs"),
            F.count_if(F.col(tf.DAY).isNull()).alias("quarantine"),
        ).first()
        summary.rows_read = totals["rows"]
        summary.rows_rejected = totals["rejected"]
        summary.rows_encrypted = totals["rows"] - totals["rejected"]
        if totals["rejected"]:
            reasons = (rows.where(F.size(tf.REASONS) > 0).select(F.explode(tf.REASONS).alias("r"))
                       .groupBy("r").count().collect())
            summary.rejected_by_reason = {r["r"]: r["count"] for r in reasons}
        progress(2, "read and validated %s rows, %s rejected", f"{summary.rows_read:,}", f"{summary.rows_rejected:,}")
        _check_rejected_fraction(config, summary)
        if batch is not None:
            files.claim(batch)

        # Keys: one per (group, key-field value, UTC day), committed before any data. Only the
        # distinct pairs are hashed; rows whose day is unknown share one quarantine key per run.
        hashed = pairs.select(
            tf.KEY_VALUE, tf.DAY,
            F.when(F.col(tf.DAY).isNull(), F.lit(f"quarantine:{run_id}"))
            .otherwise(hmac_column(F.col(tf.KEY_VALUE), hash_key)).alias("keyHash"),
        ).persist(StorageLevel.MEMORY_AND_DISK)
        summary.quarantine_key = totals["quarantine"] > 0
        summary.keys_needed = totals["pairs"] - totals["quarantine"]
        created = store.create_missing(config.group_id, hashed.select("keyHash", F.col(tf.DAY).alias("day")),
                                       config.retention_days, run_id)
        summary.keys_created = created - totals["quarantine"]
        summary.keys_reused = summary.keys_needed - summary.keys_created
        progress(3, "keys: %s needed, %s created, %s reused", f"{summary.keys_needed:,}",
                 f"{summary.keys_created:,}", f"{summary.keys_reused:,}")

        keymap = store.lookup(config.group_id, hashed, day_col=tf.DAY).select(
            F.col(tf.KEY_VALUE).alias("__jk_value"), F.col(tf.DAY).alias("__jk_day"),
            tf.KEY_LINK, tf.KEYSET, tf.EXPIRES_AT)
        keysets = None
        if jvm:
            # Encryption in the JVM (strm_encrypt_jvm): each row's keyset (compact form) comes
            # with its key link, from the (value, day) -> key map computed once and kept in
            # memory only.
            keymap = keymap.withColumn(tf.KEYSET, compact_keyset_column(F.col(tf.KEYSET)))
            keymap = key_cache = keymap.persist(StorageLevel.MEMORY_ONLY)
            keymap.count()
            if totals["pairs"] <= _BROADCAST_KEYS:
                keymap = F.broadcast(keymap)
        elif totals["pairs"] <= _BROADCAST_KEYS:
            # Ship each keyset to the workers once (a broadcast map by key link), not per row.
            keysets = spark.sparkContext.broadcast(
                {r[tf.KEY_LINK]: bytes(r[tf.KEYSET]) for r in keymap.select(tf.KEY_LINK, tf.KEYSET).collect()})
            keymap = F.broadcast(keymap.drop(tf.KEYSET))
        joined = rows.join(
            keymap,
            rows[tf.KEY_VALUE].eqNullSafe(keymap["__jk_value"]) & rows[tf.DAY].eqNullSafe(keymap["__jk_day"]),
            "left",
        ).drop("__jk_value", "__jk_day")
        if totals["rejected"]:
            numbers = _row_numbers(rows)
            joined = (joined.join(F.broadcast(numbers), [FILE, BLOCK], "left")
                      .withColumn("rowNumber", F.col(ROW_ID) - F.col("first_id") + F.col("before") + 1)
                      .drop("first_id", "before"))
        else:
            joined = joined.withColumn("rowNumber", F.lit(None).cast("long"))
        targets = {tf.pii_column(i): tf.enc_column(i) for i in range(len(contract.pii_names))}
        # A malformed record's raw text is encrypted on the rejected rows alone when the keysets
        # are broadcast (not once per row of the whole input); else here, with the rows' keysets.
        corrupt_later = keysets is not None or not totals["rejected"]
        if not corrupt_later:
            targets[CORRUPT] = tf.ENC_CORRUPT
        processed = tf.with_encrypted_columns(joined, targets, tf.KEY_LINK if keysets else tf.KEYSET, keysets,
                                              engine="jvm" if jvm else "python")
        # Each day's rows in one task, sorted: one file per day, and no sort of its own in each
        # partitioned write below.
        processed = processed.repartition(tf.DAY).sortWithinPartitions(tf.DAY)
        # With broadcast keysets or the JVM encryption, the processed rows are not cached: each
        # output computes them from the cached source rows, and only outputs holding ciphertext
        # run the encryption (AES-SIV is deterministic, so every output gets the same
        # ciphertext). Otherwise the keysets come from a join with the key store, computed once.
        cache_processed = keysets is None and not jvm
        if cache_processed:
            processed = processed.persist(StorageLevel.MEMORY_AND_DISK)

        # Counts and data subjects need no ciphertext: from the processed rows when cached, else
        # from the rows matched with their keys (no encryption, no shuffle by day).
        matched = processed if cache_processed else joined
        valid = processed.where(F.size(tf.REASONS) == 0)
        derived_counts = matched.where(F.size(tf.REASONS) == 0).agg(*[
            F.count_if(consent_rules.allows_column(F.col(tf.CONSENT), d.consent_type, d.consent_levels)).alias(d.name)
            for d in config.derived
        ]).first() if config.derived else {}
        if cache_processed:
            processed.count()
            rows.unpersist()
        pairs.unpersist()
        hashed.unpersist()
        progress(4, "%s rows matched with their keys", f"{summary.rows_read:,}")

        stats_cols = [n for n in contract.field_names if n not in contract.sensitive_columns]
        stats_cols += ["strmMeta.eventContractRef", "strmMeta.timestamp", "strmMeta.keyLink"]
        # STRM's CSV layout carries the source text of every field and keeps input order.
        order = [FILE, BLOCK, ROW_ID]
        text = tf.with_raw_text(valid, contract)

        def write(rows_for: Callable[[DataFrame, Sequence[str]], DataFrame], out: OutputConfig | DerivedConfig) -> None:
            if out.format == "strm-csv":
                write_strm_csv(rows_for(text, order), out.path, out.charset, order)
            else:
                write_table(rows_for(valid, ()), out.path, out.format, mode, ["strmDay"], stats_cols, txn)

        write(lambda df, carry: tf.encrypted_rows(df, contract, config.event_contract_ref, carry), config.encrypted)
        summary.outputs["encrypted"] = config.encrypted.path
        summary.outputs["keys"] = store.keys_path
        if config.keys_export is not None:
            export = store.keys_export(valid.select(tf.KEY_LINK, *order))
            write_strm_csv(export, config.keys_export.path, config.keys_export.charset, order)
            summary.outputs["keys export"] = config.keys_export.path
            summary.notes.append(f"{config.keys_export.path} holds cleartext keysets: protect or delete it")

        for d in config.derived:
            masks = {name: masker_for(d.hash_type, d.inline_seed, mask_seed) for name in d.masked_fields}
            if d.masked_fields and d.hash_type == "MURMUR3":
                summary.notes.append(f"derived {d.name}: MurmurHash3 masking is not a cryptographic hash"
                                     + ("; the seed is empty, so masked values can be reversed by brute force"
                                        if not d.inline_seed else ""))
            write(lambda df, carry, d=d, masks=masks: tf.derived_rows(
                df, contract, config.event_contract_ref, d.consent_type, d.consent_levels, masks, carry), d)
            summary.derived_rows[d.name] = derived_counts[d.name]
            summary.outputs[f"derived {d.name}"] = d.path

        rejected_src = processed.where(F.size(tf.REASONS) > 0)
        if corrupt_later:
            rejected_src = (tf.with_encrypted_columns(rejected_src, {CORRUPT: tf.ENC_CORRUPT}, tf.KEY_LINK, keysets)
                            if keysets is not None else rejected_src.withColumn(tf.ENC_CORRUPT, F.lit(None).cast("string")))
        rejected = tf.rejected_rows(rejected_src, contract, config.event_contract_ref, run_id)
        rejected_stats = [n for n in contract.field_names if n not in contract.sensitive_columns]
        rejected_stats += ["sourceFile", "rowNumber", "runId", "rejectedAt"]
        if totals["rejected"] or mode != "append" or config.rejected.format != "delta":
            write_table(rejected, config.rejected.path, config.rejected.format,
                        mode, (), rejected_stats, txn)
        else:  # nothing to append: the table only has to exist (one commit saved per run)
            create_delta_table(spark, config.rejected.path, rejected.schema, (), rejected_stats)
        summary.outputs["rejected"] = config.rejected.path
        progress(5, "encrypted, derived and rejected tables written")

        summary.data_subject_links_added = _merge_data_subjects(spark, matched, config)
        summary.outputs["data subjects"] = config.data_subjects.path
        progress(6, "data subjects updated")
        if batch is not None:
            files.finish(batch)
        processed.unpersist()
        if keysets is not None:
            keysets.destroy()
    finally:
        rows.unpersist()
        if key_cache is not None:
            key_cache.unpersist()

    return _finish(spark, config, summary, started)


def _finish(spark: SparkSession, config: JobConfig, summary: RunSummary, started: float) -> RunSummary:
    summary.wall_time_s = round(time.monotonic() - started, 2)
    summary.rows_per_s = round(summary.rows_read / summary.wall_time_s, 1) if summary.wall_time_s else 0.0
    summary_path = (f"{config.summary_dir}/run-{summary.started_at.replace(':', '')[:17]}-"
                    f"{uuid.uuid4().hex[:6]}-{summary.run_id}.json")
    summary.outputs["run summary"] = summary_path
    _write_text(spark, summary_path, summary.to_json())
    return summary


def _check_rejected_fraction(config: JobConfig, summary: RunSummary) -> None:
    """Fail the run, before anything is committed, when too many rows are rejected."""
    limit = config.max_rejected_fraction
    if limit is None or not summary.rows_read:
        return
    fraction = summary.rows_rejected / summary.rows_read
    if fraction > limit:
        reasons = "; ".join(f"{n:,} {r}" for r, n in sorted(summary.rejected_by_reason.items(), key=lambda kv: -kv[1])[:5])
        raise DataError(f"{config.source.path}: {summary.rows_rejected:,} of {summary.rows_read:,} rows rejected "
                        f"({fraction:.1%}), above max_rejected_fraction {limit:g}; nothing was written. "
                        f"Reasons: {reasons}")


def _merge_data_subjects(spark: SparkSession, rows: DataFrame, config: JobConfig) -> int:
    """Add (data subject, key link) entries for rows with a subject value; idempotent."""
    path = config.data_subjects.path
    create_delta_table(spark, path, DATA_SUBJECTS_SCHEMA, stats_columns="keyLink,groupId,expiresAt,createdAt")
    links = (rows.where(F.col(tf.SUBJECT).isNotNull() & F.col(tf.DAY).isNotNull() & F.col(tf.KEY_LINK).isNotNull())
             .select(F.col(tf.SUBJECT).alias("dataSubject"), F.col(tf.KEY_LINK).alias("keyLink"),
                     F.col(tf.EXPIRES_AT).alias("expiresAt")).distinct()
             .withColumn("groupId", F.lit(config.group_id))
             .withColumn("createdAt", F.current_timestamp())
             .select(*DATA_SUBJECTS_SCHEMA.fieldNames()))

    def merge() -> int:
        table = DeltaTable.forPath(spark, path)
        return inserted_rows(table.alias("t").merge(links.alias("s"), "t.dataSubject = s.dataSubject AND t.keyLink = s.keyLink")
                             .whenNotMatchedInsertAll().execute())

    return retry_on_conflict(merge, f"data subjects {path}")
