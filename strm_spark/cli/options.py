"""Options every command that starts Spark shares: where its session comes from."""

from __future__ import annotations

import argparse


def spark_for(args: argparse.Namespace, what: str):
    """The session of a command: `--remote`, the launcher's, or a new local one with `--conf`."""
    from strm_spark.session import get_spark

    conf = dict(c.split("=", 1) for c in args.conf or [])
    return get_spark(f"strm-spark {what}", args.master, remote=args.remote, extra_conf=conf)


def _conf(value: str) -> str:
    if "=" not in value or not value.split("=", 1)[0].strip():
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return value


def session_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--master", help="Spark master for a new local session (default local[*])")
    parser.add_argument(
        "--conf",
        action="append",
        type=_conf,
        metavar="KEY=VALUE",
        help="a Spark setting for a new local session (repeatable), e.g. "
        "spark.sql.catalogImplementation=hive",
    )
    parser.add_argument(
        "--remote",
        metavar="sc://HOST:PORT",
        default=None,
        help="run on this Spark Connect server (default: SPARK_REMOTE when set)",
    )
