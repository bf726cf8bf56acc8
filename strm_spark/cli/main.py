"""`strm-spark` command line: run, stream, run-strm, sql, validate, new-secret, subjects, keys."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from strm_spark.cli.keys import add_keys_commands
from strm_spark.cli.options import session_options, spark_for
from strm_spark.cli.subjects import add_subjects_commands
from strm_spark.errors import StrmSparkError

log = logging.getLogger("strm_spark.cli")


def _run(args: argparse.Namespace) -> int:
    from strm_spark.config.load import load_job_config

    config = load_job_config(args.config)  # validated before Spark starts
    if args.source:
        config = config.with_source_path(args.source)
    from strm_spark.pipeline.run import run_job

    summary = run_job(
        spark_for(args, config.name), config, reprocess=args.reprocess, strict=args.strict
    )
    print(summary.render())
    return 0


def _stream(args: argparse.Namespace) -> int:
    from strm_spark.config.load import load_job_config
    from strm_spark.pipeline.stream import StreamOptions, run_stream

    config = load_job_config(args.config)  # validated before Spark starts
    if args.checkpoint:
        config = config.with_checkpoint(args.checkpoint)
    options = StreamOptions(
        available_now=args.trigger_interval is None,
        interval=args.trigger_interval,
        max_files_per_trigger=args.max_files_per_trigger,
        timeout_s=args.timeout,
    )
    summary = run_stream(spark_for(args, config.name), config, options, strict=args.strict)
    print(summary.render())
    return 0


def _run_strm(args: argparse.Namespace) -> int:
    from strm_spark.compat.strm.config import load_strm_job, parse_connectors

    config = load_strm_job(
        args.config,
        args.contract,
        args.schema,
        parse_connectors(args.connector),
        key_store=args.keys_store,
        key_schema=args.keys_schema,
        master_key_file=args.master_key,
    )
    from strm_spark.pipeline.run import run_job

    summary = run_job(spark_for(args, config.name), config)
    print(summary.render())
    return 0


def _sql(args: argparse.Namespace) -> int:
    from strm_spark.config.load import load_job_config

    config = load_job_config(args.config)
    from strm_spark.sql.readonly import check_read_only
    from strm_spark.sql.views import register_job_views

    query = args.query or (open(args.file, encoding="utf-8").read() if args.file else None)
    spark = spark_for(args, f"sql {config.name}")
    names = register_job_views(spark, config)
    print(
        f"views: {', '.join(names)} (derived outputs decrypt at query time); functions: strm_decrypt, "
        "strm_decrypt_strict, strm_mask, strm_mask_murmur3, strm_consent_allows"
    )
    if query:
        if args.allow_writes:
            log.warning(
                "strm-spark sql: --allow-writes given; statements may write or change tables and files"
            )
        _show(spark, query, args.limit, None if args.allow_writes else check_read_only)
    return 0


def _show(spark, query: str, limit: int, check=None) -> None:
    """Run and print a query; a statement that does not parse or resolve is a user error
    (exit 2), told by its error class and the first line of Spark's message, which names the
    statement's own words and no row values (errors while rows are read are not shown)."""
    from pyspark.errors import AnalysisException

    from strm_spark.errors import QueryError

    try:
        if check is not None:
            check(spark, query)
        df = spark.sql(query)
    except AnalysisException as exc:
        condition = exc.getCondition() or type(exc).__name__
        first = next((line for line in str(exc).splitlines() if line.strip()), "")[:300]
        raise QueryError(f"the query does not parse or resolve ({condition}): {first}") from None
    df.show(limit, truncate=False)


def _validate(args: argparse.Namespace) -> int:
    from strm_spark.config.load import load_job_config

    config = load_job_config(args.config)
    from strm_spark.config.preflight import check_job

    check_job(config, strict=args.strict)  # what the run would fail on, and secrets' modes
    print(
        f"{args.config}: valid (job {config.name}, contract {config.contract.source}, "
        f"{len(config.contract.pii_fields)} PII fields, {len(config.derived)} derived outputs)"
    )
    if args.online:
        for line in _online_checks(args, config):
            print(f"  online: {line}")
    return 0


def _online_checks(args: argparse.Namespace, config) -> list[str]:
    """`validate --online`: what a run checks on its session before writing, writing nothing:
    the regexes in Spark, and a KMS master key against the key store (one KMS request)."""
    from strm_spark.config.preflight import check_on_session
    from strm_spark.crypto.envelope import load_master_key
    from strm_spark.keys.hierarchy import check_master

    spark = spark_for(args, f"validate {config.name}")
    check_on_session(spark, config)
    done = ["the validation regexes compile in Spark"]
    if config.master_key is not None:
        master = load_master_key(config.master_key)
        done.append(check_master(spark, config.key_store, config.group_id, master))
    return done


def _new_secret(args: argparse.Namespace) -> int:
    from strm_spark.config.preflight import check_secret_mode
    from strm_spark.crypto.masking import new_secret_file

    if new_secret_file(args.path):
        print(f"created secret file {args.path} (mode 0600); keep it out of version control")
        return 0
    check_secret_mode(args.path, "new-secret", args.strict)  # warns, or refuses with --strict
    print(f"secret file {args.path} exists; left unchanged")
    return 0


def _add_validate_command(sub: argparse._SubParsersAction) -> None:
    val = sub.add_parser(
        "validate",
        help="check a job config and its contract (starts no Spark; --online: on a session)",
    )
    val.add_argument("config")
    _strict(val)
    val.add_argument(
        "--online",
        action="store_true",
        help="also check on a Spark session, writing nothing: the regexes, and a KMS master "
        "key against the key store (one KMS request)",
    )
    session_options(val)
    val.set_defaults(func=_validate)


def _add_stream_command(sub: argparse._SubParsersAction) -> None:
    stream = sub.add_parser(
        "stream", help="run a job as a Structured Streaming query (each micro-batch a batch)"
    )
    stream.add_argument("config", help="job config file (YAML or JSON)")
    trigger = stream.add_mutually_exclusive_group()
    trigger.add_argument(
        "--available-now",
        action="store_true",
        help="process what the source holds now, in micro-batches, then stop (the default)",
    )
    trigger.add_argument(
        "--trigger-interval",
        metavar="DURATION",
        help="a long-running query with a micro-batch every DURATION (e.g. 30s, 5m)",
    )
    stream.add_argument(
        "--max-files-per-trigger",
        type=int,
        metavar="N",
        help="file sources: at most N new files per micro-batch (Spark's maxFilesPerTrigger)",
    )
    stream.add_argument(
        "--checkpoint", help="the query's checkpoint folder (default: outputs.checkpoint)"
    )
    stream.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="with --trigger-interval: stop the query after SECONDS (default: run until stopped)",
    )
    _strict(stream)
    session_options(stream)
    stream.set_defaults(func=_stream)


def _strict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse secret files (seed, master key) that others can read; else a warning",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strm-spark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a batch job from a YAML job config")
    run.add_argument("config", help="job config file (YAML or JSON)")
    run.add_argument("--source", help="override source.path (a file, folder or URI)")
    _strict(run)
    run.add_argument(
        "--reprocess",
        action="store_true",
        help="incremental jobs: process every source file again and overwrite the outputs "
        "(existing keys are reused)",
    )
    session_options(run)
    run.set_defaults(func=_run)

    _add_stream_command(sub)

    strm = sub.add_parser(
        "run-strm", help="run STRM Privacy's batch-job config, contract and schema unchanged"
    )
    strm.add_argument("--config", required=True, help="STRM batch-job config (JSON)")
    strm.add_argument("--contract", required=True, help="STRM data contract (JSON)")
    strm.add_argument("--schema", required=True, help="Simple Schema (JSON or YAML)")
    strm.add_argument(
        "--connector",
        action="append",
        default=[],
        metavar="NAME=BASE_URI",
        help="where a data_connector_ref name points: a local folder or a URI; repeatable",
    )
    strm.add_argument(
        "--keys-store", help="key store location (default: beside keys.csv, in strm-spark/keystore)"
    )
    strm.add_argument(
        "--keys-schema",
        metavar="[CATALOG.]SCHEMA",
        help="keep the key store's tables in this schema instead (tables by name)",
    )
    strm.add_argument(
        "--master-key",
        metavar="FILE",
        help="Tink AEAD keyset file that encrypts the key store's keysets at rest "
        "(create one with `strm-spark keys new-master-key FILE`)",
    )
    session_options(strm)
    strm.set_defaults(func=_run_strm)

    sql = sub.add_parser(
        "sql", help="query a job's tables with decrypting views and strm_* SQL functions"
    )
    sql.add_argument("config", help="job config file")
    sql.add_argument("--query", "-q", help="SQL to run (e.g. SELECT * FROM analytics LIMIT 5)")
    sql.add_argument("--file", "-f", help="a file with the SQL to run")
    sql.add_argument("--limit", type=int, default=20, help="rows to print")
    session_options(sql)
    sql.add_argument(
        "--allow-writes",
        action="store_true",
        help="also run statements that write or change anything (read-only by default; logged)",
    )
    sql.set_defaults(func=_sql)

    _add_validate_command(sub)

    sec = sub.add_parser("new-secret", help="create a random secret file (e.g. a masking seed)")
    sec.add_argument("path")
    _strict(sec)
    sec.set_defaults(func=_new_secret)

    add_subjects_commands(sub)
    add_keys_commands(sub)
    return parser


@contextlib.contextmanager
def _json_stdout():
    """With --json, stdout holds only the JSON: file descriptor 1 (which the JVM that Spark
    starts inherits, with log4j's lines and Delta's "Deleted N files") goes to stderr, and
    Python's `print` writes to the real stdout, where only the JSON is printed. Restored
    afterwards; left alone where stdout is already captured (an embedding program, tests)."""
    if sys.stdout is not sys.__stdout__:
        yield
        return
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(os.dup(real), "w", buffering=1, encoding="utf-8")
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stdout.close()
        os.dup2(real, 1)
        os.close(real)
        sys.stdout = sys.__stdout__


def _debug_log(exc: BaseException) -> str:
    """The full error, for --debug only, in an owner-only file (Spark's texts can quote row
    values, so they are never printed)."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="strm-spark-debug-", suffix=".log")  # created 0600
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(traceback.format_exception(exc)))
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    if not debug:  # pyspark logs each failed query as a multi-KB JSON record, values included
        logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    try:
        with _json_stdout() if getattr(args, "json", False) else contextlib.nullcontext():
            return args.func(args)
    except StrmSparkError as exc:
        print(f"strm-spark: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Spark or I/O failure: its class and what to do, never its text
        condition = getattr(exc, "getCondition", lambda: None)() or type(exc).__name__
        print(
            f"strm-spark: error: the {args.command} command failed ({condition}). Spark's message is not "
            "shown, since it can quote row values; rerun with --debug to write it to a log file.",
            file=sys.stderr,
        )
        if debug:
            path = _debug_log(exc)
            print(
                f"strm-spark: warning: the full error is in {path} (mode 0600): it may hold data values; "
                "delete it when done",
                file=sys.stderr,
            )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
