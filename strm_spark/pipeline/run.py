"""`run_job`: the stages composed, in one direction, every cache released in one place."""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from strm_spark import columns as cols
from strm_spark.columns import ORDER_COLUMNS, TOMBSTONED
from strm_spark.config import preflight
from strm_spark.config.model import JobConfig
from strm_spark.errors import StrmSparkError
from strm_spark.keys import tombstones as tombstone_table
from strm_spark.keys.store import KeyStore
from strm_spark.pipeline import derive, keys, summary, write
from strm_spark.pipeline import transforms as tf
from strm_spark.pipeline.checkpoint import refuse_if_streamed
from strm_spark.pipeline.encrypt import Encryptor
from strm_spark.pipeline.incremental import Batch, FileLog
from strm_spark.pipeline.read import as_data_error, read_source
from strm_spark.pipeline.tombstones import with_tombstoned
from strm_spark.pipeline.validate import with_validation
from strm_spark.session import scoped_conf
from strm_spark.storage import sinks
from strm_spark.storage.listing import list_files
from strm_spark.storage.outputs import FORMULA_START
from strm_spark.storage.tables import owner_only

# Session settings held while a run runs, restored after it. The CSV reader only flags
# malformed records reliably when it parses every column (a SQL conf only: no reader option
# exists).
RUN_CONF = {"spark.sql.csv.parser.columnPruning.enabled": "false"}
# On a local master, adaptive execution is off during a run: it runs each shuffle stage of a
# plan as a Spark job of its own, and a run's plans (aggregates to a few rows, joins with a
# broadcast key map, over the few shuffle partitions a local session has) give it nothing to
# improve. A cluster keeps it: its coalescing matters with 200 shuffle partitions.
LOCAL_RUN_CONF = {"spark.sql.adaptive.enabled": "false"}


def _run_conf(spark: SparkSession) -> dict[str, str]:
    try:
        local = str(spark.conf.get("spark.master", "")).startswith("local")
    except Exception:  # a session that does not say (Databricks serverless)
        local = False
    return LOCAL_RUN_CONF if local else {}


def run_job(
    spark: SparkSession,
    config: JobConfig,
    *,
    run_id: str | None = None,
    reprocess: bool = False,
    engine: str = "auto",
    strict: bool = False,
) -> summary.RunSummary:
    """Run the batch job described by `config` on `spark`. With `source.incremental`, only
    files no earlier run processed (all of them with `reprocess`, outputs overwritten).
    `engine`: where cells are encrypted: 'jvm' (strm-spark's UDF jar), 'python' (Arrow UDFs),
    or 'auto' (the JVM when the jar is on the class path); the ciphertext is the same.
    `strict`: refuse secret files others can read (else a warning)."""
    # What would otherwise fail after tables were created: seed, source, outputs, regexes.
    preflight.check_job(config, java_regexes=False, strict=strict)
    preflight.check_on_session(spark, config)
    # Existing local output folders owner-only, and every file written, also by a failed run.
    with owner_only(spark, config.written_locations()):
        return _data_errors_named(lambda: _run(spark, config, run_id, reprocess, engine))


def _data_errors_named(run: Callable[[], summary.RunSummary]) -> summary.RunSummary:
    """`run`, with the Spark read failures we know raised as a DataError naming the file."""
    try:
        return run()
    except StrmSparkError:
        raise
    except Exception as exc:
        translated = as_data_error(exc)
        if translated is not None:
            raise translated from None
        raise


@dataclass(frozen=True)
class MicroBatch:
    """A stream's micro-batch, run as a batch (`strm_spark.pipeline.stream`): its rows (in
    `read_source`'s shape), its run id and the Delta transaction of its writes."""

    batch_id: int
    run_id: str
    txn: tuple[str, int]
    rows: DataFrame


def run_micro_batch(
    spark: SparkSession, config: JobConfig, micro: MicroBatch, engine: str = "auto"
) -> summary.RunSummary:
    """One micro-batch of a stream, as `run_job` runs a batch: the stream checked the config
    once, before it started. Every write is idempotent (Delta's transaction per stream and
    batch id, insert-only key and subject MERGEs), so a replayed micro-batch completes what a
    killed one left and adds nothing twice."""
    return _data_errors_named(lambda: _run(spark, config, micro.run_id, False, engine, micro))


def _run(
    spark: SparkSession,
    config: JobConfig,
    run_id: str | None,
    reprocess: bool,
    engine: str,
    micro: MicroBatch | None = None,
) -> summary.RunSummary:
    started = time.monotonic()
    plan = _plan_run(spark, config, run_id, reprocess, micro)
    out, batch, files = plan.out, plan.batch, plan.files
    if files and batch is None:
        out.notes.append("no new files in the source: nothing to do")
        return summary.finish(spark, config, out, started)
    mask_seed = config.masking_seed.resolve() if config.masking_seed else None
    # The master key is read and checked against the key store before anything is written.
    store = KeyStore.for_job(spark, config, create_kek=True)
    encryptor = Encryptor.for_session(spark, engine)
    out.engine = f"{encryptor.engine} ({encryptor.reason})"
    progress = summary.Progress(5)

    with contextlib.ExitStack() as release:
        release.enter_context(scoped_conf(spark, RUN_CONF))
        release.enter_context(scoped_conf(spark, _run_conf(spark), optional=True))
        rows = _read_stage(spark, config, store, batch, micro)
        groups, counts = _scan_stage(rows, config, out, release)
        progress(1, "read %s rows, %s rejected", f"{counts.rows:,}", f"{counts.rejected:,}")
        summary.check_rejected_fraction(config, out)
        batch_keys = _key_stage(config, store, groups, counts, plan.run_id, release)
        progress(2, "key store ready: %s", store.location)
        batch_keys.look_up(encryptor)
        _note_cleartext(out, store.master, batch_keys.cleartext)
        out.key_store = _store_form(store, batch_keys.wrapped)
        progress(3, "keys looked up: %s needed", f"{out.keys_needed:,}")
        if batch is not None:
            files.claim(batch)
        out.keys_created = batch_keys.create_missing()
        out.keys_reused = out.keys_needed - out.keys_created
        keymap, expires_first, expires_last = batch_keys.key_map(encryptor)
        progress(
            4,
            "keys: %s needed, %s created, %s reused",
            f"{out.keys_needed:,}",
            f"{out.keys_created:,}",
            f"{out.keys_reused:,}",
        )

        kept = (
            rows.where(~F.col(TOMBSTONED)).drop(TOMBSTONED) if TOMBSTONED in rows.columns else rows
        )
        valid = derive.valid_rows(derive.with_keys(kept, keymap), config, encryptor)
        # Rejected rows come from the scan; row numbers count every record of a file, dropped
        # ones too.
        rejected = derive.with_keys(keys.rejected_source(groups), keymap)
        if config.source.kafka is not None:  # a Kafka record is found by its offset
            rejected = rejected.withColumn("rowNumber", F.col(cols.ROW_ID))
        else:
            rejected = derive.with_row_numbers(rejected, groups, counts.rejected > 0)
        tasks = _output_tasks(
            _Outputs(spark, config, plan, store, encryptor, mask_seed), valid, rejected, counts
        )
        links = derive.data_subject_links(keys.subject_entries(groups), keymap, config.group_id)
        tasks.append(
            lambda: write.merge_data_subjects(spark, links, config, expires_first, expires_last)
        )
        *written, out.data_subject_links_added = _side_by_side(tasks)
        out.notes += [note for note in written if isinstance(note, str)]
        out.outputs["data subjects"] = config.data_subjects.path
        progress(5, "encrypted, derived, rejected and data subjects tables written")
        if batch is not None:
            files.finish(batch)
    return summary.finish(spark, config, out, started, plan.txn if micro else None)


@dataclass
class _RunPlan:
    """What a run processes: the batch of an incremental job (None: the whole source, or no
    new files when `files` is set), its run id, write mode and Delta transaction, the summary."""

    files: FileLog | None
    batch: Batch | None
    run_id: str
    mode: str
    txn: Any
    out: summary.RunSummary


def _plan_run(
    spark: SparkSession,
    config: JobConfig,
    run_id: str | None,
    reprocess: bool,
    micro: MicroBatch | None = None,
) -> _RunPlan:
    if micro is not None:
        out = summary.RunSummary(
            config.name,
            micro.run_id,
            datetime.now(UTC).isoformat(timespec="seconds"),
            config.source.path,
        )
        out.batch = {"id": micro.batch_id, "stream": micro.txn[0], "mode": "append"}
        return _RunPlan(None, None, micro.run_id, "append", micro.txn, out)
    if config.source.incremental:
        refuse_if_streamed(spark, config)
    files = (
        FileLog(spark, config.summary_table("files"), config.name)
        if config.source.incremental
        else None
    )
    batch: Batch | None = (
        files.next_batch(list_files(spark, config.source.path), reprocess) if files else None
    )
    run_id = batch.run_id if batch else run_id or uuid.uuid4().hex[:12]
    mode = batch.mode if batch else config.write_mode
    txn = files.txn(batch) if batch else None
    out = summary.RunSummary(
        config.name, run_id, datetime.now(UTC).isoformat(timespec="seconds"), config.source.path
    )
    if batch is not None:
        out.batch = {
            "id": batch.batch_id,
            "files": len(batch.files),
            "resumed": batch.resumed,
            "mode": mode,
        }
        if batch.resumed and reprocess:
            out.notes.append("an unfinished batch was completed first; run again with --reprocess")
    return _RunPlan(files, batch, run_id, mode, txn, out)


def _read_stage(
    spark: SparkSession,
    config: JobConfig,
    store: KeyStore,
    batch: Batch | None,
    micro: MicroBatch | None = None,
) -> DataFrame:
    """The validated source rows (with TOMBSTONED where subjects were forgotten earlier): a
    plan, not a cache. Each output reads the source again, which costs less than caching every
    row (docs/performance.md). Only tombstones already in the store are read."""
    if micro is not None:
        source = micro.rows
    else:
        paths = batch.paths if batch else None
        source = read_source(spark, config.source, config.contract, paths)
    rows = with_validation(source, config)
    tombs = tombstone_table.read(spark, config.key_store, config.group_id)
    if tombs is not None:  # subjects forgotten earlier: their earlier rows are dropped
        rows = with_tombstoned(rows, tombs, store.audit_key(config.group_id), config)
    return rows


def _scan_stage(
    rows: DataFrame, config: JobConfig, out: summary.RunSummary, release: contextlib.ExitStack
) -> tuple[DataFrame, keys.Totals]:
    """The run's one aggregate over every row (`keys.scan`), cached (a few rows per (value,
    day) pair), and its counts, in the summary. Runs before the key store is touched: a CSV
    header that does not match the contract fails here, with nothing created."""
    groups = keys.scan(rows, config).persist(StorageLevel.MEMORY_AND_DISK)
    release.callback(groups.unpersist)
    counts = keys.totals(groups, config)
    out.rows_tombstoned = counts.tombstoned
    out.rows_read, out.rows_rejected = counts.rows + counts.tombstoned, counts.rejected
    out.rows_encrypted, out.rejected_by_reason = counts.rows - counts.rejected, counts.reasons
    out.quarantine_key, out.keys_needed = counts.quarantine > 0, counts.pairs - counts.quarantine
    return groups, counts


def _key_stage(
    config: JobConfig,
    store: KeyStore,
    groups: DataFrame,
    counts: keys.Totals,
    run_id: str,
    release: contextlib.ExitStack,
) -> keys.BatchKeys:
    """The key store made ready (owner-only where local) and the batch's (value, day) pairs,
    keyed by the group's hash key and cached, for the key lookup."""
    store.ensure()
    pairs = keys.pairs(groups, store.hash_key(config.group_id), run_id)
    pairs = pairs.persist(StorageLevel.MEMORY_AND_DISK)
    release.callback(pairs.unpersist)
    batch_keys = keys.BatchKeys(store, config, pairs, counts, run_id)
    release.callback(batch_keys.release)
    return batch_keys


def _store_form(store, wrapped: dict[str | None, int]) -> str:
    """The key store's form, for the summary: under the key hierarchy (one KMS request a run)
    or wrapped directly by a master key (`keys rotate-master` moves it under the hierarchy)."""
    if store.master is None:
        return "keysets in cleartext (no keys.master_key)"
    move = "`strm-spark keys rotate-master` moves them under a key-encryption keyset"
    if store.legacy is None:
        return f"keysets wrapped directly by the master key {store.master.id} ({move})"
    form = (
        f"key hierarchy: keysets wrapped by the key-encryption keyset {store.master.id}, "
        f"which {store.legacy.id} wraps"
    )
    direct = sum(n for by, n in wrapped.items() if by is not None and not by.startswith("kek:"))
    return form + (
        f"; {direct:,} of the batch's keysets wrapped directly ({move})" if direct else ""
    )


def _note_cleartext(out: summary.RunSummary, master: object, cleartext: int) -> None:
    if master is None:
        out.notes.append(
            "keysets in the key store are stored in cleartext; "
            "set keys.master_key to encrypt them at rest"
        )
    elif cleartext:
        out.notes.append(
            f"{cleartext:,} keysets of this batch's days were stored in cleartext before "
            f"keys.master_key was set; new keysets are encrypted with {master.id}"
        )


def _formula_cells_note(output, rows, name: str) -> str | None:
    """STRM's one-file CSV keeps STRM's bytes, so its cells are not guarded: a note for the
    summary saying how many rows hold a cell a spreadsheet would run as a formula (one count,
    STRM CSV only)."""
    if not output.strm_layout:
        return None
    texts = [
        F.col(f"`{f.name}`") for f in rows.schema.fields if f.dataType.simpleString() == "string"
    ]
    if not texts:
        return None
    risky = rows.where(F.exists(F.array(*texts), lambda c: c.rlike(FORMULA_START))).count()
    if not risky:
        return None
    return (
        f"{name}: {risky:,} rows hold a cell starting with = + - @ tab or CR, written as STRM "
        "wrote it (STRM's CSV layout is kept byte for byte); open the file in a spreadsheet "
        "only with formulas off"
    )


def _rows_for(valid, config, out):
    """The valid rows an output is built from, and the columns it carries: STRM's one-file CSV
    echoes the source text and keeps input order."""
    if out.strm_layout:
        return tf.with_raw_text(valid, config.contract), ORDER_COLUMNS
    return valid, ()


def _side_by_side(tasks: list[Callable[[], Any]]) -> list[Any]:
    """Run independent writes at the same time, each in a thread of its own, and return their
    results in order: one output's Spark jobs run while another's driver plans or commits. All
    of them finish before the first error, in the tasks' order, is raised; each write is
    idempotent (its transaction, or an overwrite), so a rerun completes what a failure left."""
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="strm-write") as pool:
        futures = [pool.submit(task) for task in tasks]
        wait(futures)
    for future in futures:
        if future.exception() is not None:
            raise future.exception()
    return [future.result() for future in futures]


@dataclass(frozen=True)
class _Outputs:
    """What the output stage needs of the run: its session, config, plan, key store, encryptor
    and masking seed."""

    spark: SparkSession
    config: JobConfig
    plan: _RunPlan
    store: KeyStore
    encryptor: Encryptor
    mask_seed: bytes | None


def _output_tasks(
    run: _Outputs, valid: DataFrame, rejected: DataFrame, counts: keys.Totals
) -> list[Callable[[], Any]]:
    """The data outputs' writes, as tasks for `_side_by_side` (a data output's task returns its
    note for the summary, if any); the summary's outputs are filled here, in a fixed order."""
    spark, config, store, mask_seed = run.spark, run.config, run.store, run.mask_seed
    out, mode, txn = run.plan.out, run.plan.mode, run.plan.txn
    stats = write.stats_columns(config)
    tasks: list[Callable[[], Any]] = []

    def data_output(output, rows, name: str) -> str | None:
        write.write_output(rows, output, config, mode, txn, stats)
        return _formula_cells_note(output, rows, name)

    source, carry = _rows_for(valid, config, config.encrypted)
    encrypted = derive.encrypted_rows(source, config, carry)
    tasks.append(lambda: data_output(config.encrypted, encrypted, "encrypted"))
    out.outputs["encrypted"] = config.encrypted.path
    out.outputs["keys"] = store.keys_path
    if config.keys_export is not None:
        bounded = store.keys_for_days(
            config.group_id, counts.first_day, counts.last_day, out.run_id
        )
        export = store.keys_export(valid.select(cols.KEY_LINK, *ORDER_COLUMNS), bounded)
        dest = config.keys_export
        path, charset, fmt = dest.path, dest.charset, dest.format
        tasks.append(
            lambda: sinks.write(
                export, path, "overwrite", fmt=fmt, charset=charset, order_by=ORDER_COLUMNS
            )
        )
        out.outputs["keys export"] = path
        out.notes.append(f"{path} holds cleartext keysets: protect or delete it")
    for d in config.derived:
        if d.masked_fields and d.hash_type == "MURMUR3":
            out.notes.append(
                f"derived {d.name}: MurmurHash3 masking is not a cryptographic hash"
                + (
                    "; the seed is empty, so masked values can be reversed by brute force"
                    if not d.inline_seed
                    else ""
                )
            )
        source, carry = _rows_for(valid, config, d)
        derived = derive.derived_rows(source, config, d, mask_seed, carry)
        tasks.append(functools.partial(data_output, d, derived, f"derived {d.name}"))
        out.derived_rows[d.name] = counts.derived[d.name]
        out.outputs[f"derived {d.name}"] = d.path
    bad = derive.rejected_rows(rejected, config, run.encryptor, out.run_id)
    tasks.append(lambda: write.write_rejected(spark, bad, config, mode, txn, counts.rejected > 0))
    out.outputs["rejected"] = config.rejected.path
    return tasks
