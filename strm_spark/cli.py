"""`strm-spark` command line: run, validate, generate, new-secret."""

from __future__ import annotations

import argparse
import logging
import sys

from .errors import StrmSparkError


def _run(args: argparse.Namespace) -> int:
    from .config import load_job_config

    config = load_job_config(args.config)  # validated before Spark starts
    if args.source:
        config = config.with_source_path(args.source)
    from .job import run_job
    from .session import get_spark

    spark = get_spark(f"strm-spark {config.name}", master=args.master)
    summary = run_job(spark, config)
    print(summary.render())
    return 0


def _run_strm(args: argparse.Namespace) -> int:
    from .strm import load_strm_job, parse_connectors

    config = load_strm_job(args.config, args.contract, args.schema, parse_connectors(args.connector),
                           key_store=args.keys_store)
    from .job import run_job
    from .session import get_spark

    spark = get_spark(f"strm-spark {config.name}", master=args.master)
    summary = run_job(spark, config)
    print(summary.render())
    return 0


def _sql(args: argparse.Namespace) -> int:
    from .config import load_job_config

    config = load_job_config(args.config)
    from .session import get_spark
    from .sql import register_job_views

    spark = get_spark(f"strm-spark sql {config.name}", master=args.master)
    names = register_job_views(spark, config)
    print(f"views: {', '.join(names)} (derived outputs decrypt at query time); functions: strm_decrypt, "
          "strm_decrypt_strict, strm_mask, strm_mask_murmur3, strm_consent_allows")
    query = args.query or (open(args.file, encoding="utf-8").read() if args.file else None)
    if query:
        spark.sql(query).show(args.limit, truncate=False)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .config import load_job_config

    config = load_job_config(args.config)
    print(f"{args.config}: valid (job {config.name}, contract {config.contract.source}, "
          f"{len(config.contract.pii_fields)} PII fields, {len(config.derived)} derived outputs)")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from .generate import generate

    result = generate(args.out, rows=args.rows, seed=args.seed, invalid_fraction=args.invalid_fraction)
    print(f"wrote {result.rows:,} rows ({result.invalid_rows:,} deliberately invalid) to {result.path}")
    return 0


def _new_secret(args: argparse.Namespace) -> int:
    from .hashing import new_secret_file

    if new_secret_file(args.path):
        print(f"created secret file {args.path} (mode 0600); keep it out of version control")
    else:
        print(f"secret file {args.path} exists; left unchanged")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strm-spark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a batch job from a YAML job config")
    run.add_argument("config", help="job config file (YAML or JSON)")
    run.add_argument("--source", help="override source.path (a file, folder or URI)")
    run.add_argument("--master", help="Spark master for a new local session (default local[*])")
    run.set_defaults(func=_run)

    strm = sub.add_parser("run-strm", help="run STRM Privacy's batch-job config, contract and schema unchanged")
    strm.add_argument("--config", required=True, help="STRM batch-job config (JSON)")
    strm.add_argument("--contract", required=True, help="STRM data contract (JSON)")
    strm.add_argument("--schema", required=True, help="Simple Schema (JSON or YAML)")
    strm.add_argument("--connector", action="append", default=[], metavar="NAME=BASE_URI",
                      help="where a data_connector_ref name points: a local folder or a URI; repeatable")
    strm.add_argument("--keys-store", help="key store location (default: beside keys.csv, in strm-spark/keystore)")
    strm.add_argument("--master", help="Spark master for a new local session (default local[*])")
    strm.set_defaults(func=_run_strm)

    sql = sub.add_parser("sql", help="query a job's tables with decrypting views and strm_* SQL functions")
    sql.add_argument("config", help="job config file")
    sql.add_argument("--query", "-q", help="SQL to run (e.g. SELECT * FROM analytics LIMIT 5)")
    sql.add_argument("--file", "-f", help="a file with the SQL to run")
    sql.add_argument("--limit", type=int, default=20, help="rows to print")
    sql.add_argument("--master", help="Spark master for a new local session (default local[*])")
    sql.set_defaults(func=_sql)

    val = sub.add_parser("validate", help="check a job config and its contract; starts no Spark")
    val.add_argument("config")
    val.set_defaults(func=_validate)

    gen = sub.add_parser("generate", help="write the synthetic webshop clickstream demo CSV")
    gen.add_argument("--out", required=True, help="CSV file to write")
    gen.add_argument("--rows", type=int, default=100_000)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--invalid-fraction", type=float, default=0.005)
    gen.set_defaults(func=_generate)

    sec = sub.add_parser("new-secret", help="create a random secret file (e.g. a masking seed)")
    sec.add_argument("path")
    sec.set_defaults(func=_new_secret)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except StrmSparkError as exc:
        print(f"strm-spark: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # Spark or I/O failure: say what failed, first line only
        condition = getattr(exc, "getCondition", lambda: None)() or type(exc).__name__
        first = next((line for line in str(exc).splitlines() if line.strip()), "")
        print(f"strm-spark: error: the job failed ({condition}): {first[:300]}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
