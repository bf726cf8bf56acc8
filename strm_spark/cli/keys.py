"""`strm-spark keys`: a local master key file, and the key hierarchy's two rotations."""

from __future__ import annotations

import argparse
import sys

from strm_spark.cli.options import session_options, spark_for


def _keys_new_master_key(args: argparse.Namespace) -> int:
    from strm_spark.crypto.envelope import new_master_key_file

    key_id = new_master_key_file(args.path)
    if key_id is None:
        print(
            f"master key file {args.path} exists; left unchanged (overwriting it would make every keyset "
            "wrapped with it unreadable)"
        )
    else:
        print(
            f"created master key file {args.path} ({key_id}, Tink AES256_GCM, mode 0600); "
            "keep it out of version control and back it up: without it the key store cannot be read"
        )
    return 0


def _progress(what: str):
    """Prints how far a rewrap got, on stderr (stdout stays the summary): after each chunk."""

    def say(done: int, total: int) -> None:
        if total:
            share = 100 * done // total
            print(f"{what}: {done:,} of {total:,} keysets ({share}%)", file=sys.stderr, flush=True)

    return say


def _record(spark, config, done) -> None:
    """Who rotated what, when, in the audit table: key ids and counts, no key material."""
    from strm_spark.subjects import audit

    record = audit.AuditRecord(
        done.action, "completed", config.name, config.group_id, [], details=done.details()
    )
    audit.append(spark, config.audit, record)


def _report(done) -> None:
    print(
        f"key-encryption keyset {done.kek} of group {done.group_id}: now wrapped by {done.master}"
    )
    if done.to_do:
        moved = f"{done.rewrapped:,} of {done.to_do:,} keysets rewrapped"
        print(f"  {moved}{' (resumed)' if done.resumed else ''}")
    else:
        print("  no keyset to rewrap")
    for key, n in sorted(done.unknown.items()):
        print(f"  {n:,} keysets wrapped by {key}, which neither key opens: left as they are")


def _keys_rotate_master(args: argparse.Namespace) -> int:
    from pathlib import Path

    from strm_spark.config.load import load_job_config
    from strm_spark.config.model import MasterKeyRef
    from strm_spark.crypto.envelope import load_master_key
    from strm_spark.keys.rotation import rotate_master

    config = load_job_config(args.config)
    new = load_master_key(
        MasterKeyRef(kms_uri=args.to, config_field="--to")
        if args.to
        else MasterKeyRef(
            keyset_file=str(Path(args.to_keyset_file).resolve()), config_field="--to-keyset-file"
        )
    )
    spark = spark_for(args, f"keys rotate-master {config.name}")
    done = rotate_master(spark, config, new, _progress("moving keysets under the KEK"), args.chunk)
    _record(spark, config, done)
    _report(done)
    made = "made now: the store's keysets were wrapped directly" if done.made_kek else ""
    print(f"  was {done.was}{'; ' + made if made else ''}")
    print("Set keys.master_key to the new key before the next run.")
    return 0


def _keys_rotate_kek(args: argparse.Namespace) -> int:
    from strm_spark.config.load import load_job_config
    from strm_spark.keys.rotation import rotate_kek

    config = load_job_config(args.config)
    spark = spark_for(args, f"keys rotate-kek {config.name}")
    done = rotate_kek(spark, config, _progress("rewrapping keysets"), args.chunk)
    _record(spark, config, done)
    _report(done)
    print(f"  new primary key {done.kek}; before: {done.was} (kept to open what it wrapped)")
    return 0


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("expected a whole number of at least 1")
    return int(value)


def _rewrap_options(parser: argparse.ArgumentParser, func) -> None:
    from strm_spark.keys.rewrap import CHUNK_KEYSETS

    parser.add_argument(
        "--chunk-keysets",
        dest="chunk",
        type=_positive,
        default=CHUNK_KEYSETS,
        metavar="N",
        help=f"keysets rewrapped a commit at most, whole days (default {CHUNK_KEYSETS:,})",
    )
    session_options(parser)
    parser.set_defaults(func=func)


def add_keys_commands(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="key store tools")
    actions = keys.add_subparsers(dest="action", required=True)
    p = actions.add_parser(
        "new-master-key", help="create a local Tink AEAD master key file (mode 0600)"
    )
    p.add_argument("path")
    p.set_defaults(func=_keys_new_master_key)
    p = actions.add_parser(
        "rotate-master",
        help="rewrap the group's key-encryption keyset under another master key (O(1)); "
        "a store whose keysets a master key wraps directly moves under one",
    )
    p.add_argument("config", help="the job config; its keys.master_key opens the keyset now")
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument("--to", metavar="URI", help="the new KMS key (aws-kms://... | gcp-kms://...)")
    to.add_argument("--to-keyset-file", metavar="FILE", help="a new local Tink AEAD keyset file")
    _rewrap_options(p, _keys_rotate_master)
    p = actions.add_parser(
        "rotate-kek",
        help="a new key in the group's key-encryption keyset, every keyset rewrapped with it "
        "(resumable: run it again after an interruption)",
    )
    p.add_argument("config", help="the job config; its keys.master_key opens the keyset")
    _rewrap_options(p, _keys_rotate_kek)
