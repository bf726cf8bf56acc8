"""The `subjects` commands: list, keylinks, export, forget and purge-expired."""

from __future__ import annotations

import argparse
import json

from strm_spark.cli.options import session_options, spark_for

# Exit code of a forget that completed but found no entry for some requested ids.
NOT_FOUND = 3


def _subjects_session(args: argparse.Namespace):
    """The job config (validated before Spark starts) and a Spark session for a subjects command."""
    from strm_spark.config.load import load_job_config

    config = load_job_config(args.config)
    return config, spark_for(args, f"subjects {args.action}")


def _subjects_list(args: argparse.Namespace) -> int:
    from strm_spark.subjects.listing import list_subjects

    config, spark = _subjects_session(args)
    page = list_subjects(spark, config, page_size=args.page_size, page_token=args.page_token)
    if args.json:
        print(
            json.dumps(
                {"data_subject_ids": list(page.subjects), "next_page_token": page.next_page_token},
                indent=2,
            )
        )
    else:
        for subject in page.subjects:
            print(subject)
        if page.next_page_token:
            print(f"next-page-token: {page.next_page_token}")
    return 0


def _subjects_keylinks(args: argparse.Namespace) -> int:
    from strm_spark.cli.subject_args import read_subject_ids
    from strm_spark.subjects.listing import key_links

    ids = read_subject_ids(args.subjects, args.from_file)
    config, spark = _subjects_session(args)
    found = key_links(spark, config, ids)
    if args.json:
        print(
            json.dumps(
                [
                    {"data_subject_id": s, "key_links": [k.to_json() for k in links]}
                    for s, links in found.items()
                ],
                indent=2,
            )
        )
        return 0
    width = max([len("data subject")] + [len(s) for s in found])
    print(f"{'data subject':<{width}}  {'key link':<36}  {'day':<10}  {'expires at':<20}  key")
    for subject, links in found.items():
        if not links:
            print(f"{subject:<{width}}  (no key links)")
        for k in links:
            doc = k.to_json()
            print(
                f"{subject:<{width}}  {k.key_link:<36}  {doc['day'] or '-':<10}  {doc['expiry_time']:<20}  "
                f"{'stored' if k.key_present else 'deleted'}"
            )
    return 0


def _subjects_export(args: argparse.Namespace) -> int:
    from strm_spark.subjects.export import export_subject

    config, spark = _subjects_session(args)
    result = export_subject(spark, config, args.subject, args.out, fmt=args.format)
    print(result.render())
    return 0


def _subjects_forget(args: argparse.Namespace) -> int:
    from strm_spark.cli.subject_args import read_subject_ids
    from strm_spark.subjects.erasure import forget

    ids = read_subject_ids(args.subjects, args.from_file)
    config, spark = _subjects_session(args)
    report = forget(spark, config, ids)
    print(report.to_json() if args.json else report.render())
    return NOT_FOUND if report.not_found else 0


def _subjects_purge_expired(args: argparse.Namespace) -> int:
    from strm_spark.cli.subject_args import parse_timestamp
    from strm_spark.subjects.retention import purge_expired

    now = parse_timestamp(args.now) if args.now else None
    config, spark = _subjects_session(args)
    report = purge_expired(spark, config, now)
    print(report.to_json() if args.json else report.render())
    return 0


def add_subjects_commands(sub: argparse._SubParsersAction) -> None:
    subjects = sub.add_parser(
        "subjects", help="data subjects: list, keylinks, export, forget, purge-expired"
    )
    actions = subjects.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str, func) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "config", help="the job config file (YAML or JSON) whose outputs hold the subjects"
        )
        session_options(p)
        p.set_defaults(func=func)
        return p

    p = action("list", "list data subject ids, paged", _subjects_list)
    p.add_argument("--page-size", type=int, default=100)
    p.add_argument("--page-token", help="the token printed with the previous page")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = action("keylinks", "each subject's key links with their expiry", _subjects_keylinks)
    p.add_argument("subjects", nargs="*", metavar="SUBJECT")
    p.add_argument(
        "--from-file", metavar="FILE", help="read subject ids from FILE, one per line ('-': stdin)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")

    p = action(
        "export", "access request: the subject's rows, decrypted, plus a manifest", _subjects_export
    )
    p.add_argument("subject", metavar="SUBJECT")
    p.add_argument(
        "--out", required=True, help="a new folder for the export files and manifest.json"
    )
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")

    p = action(
        "forget",
        "erasure request: delete keys, derived and rejected rows, purge files, audit",
        _subjects_forget,
    )
    p.add_argument("subjects", nargs="*", metavar="SUBJECT")
    p.add_argument(
        "--from-file", metavar="FILE", help="read subject ids from FILE, one per line ('-': stdin)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = action(
        "purge-expired",
        "delete and purge keys past expiresAt with their rows",
        _subjects_purge_expired,
    )
    p.add_argument(
        "--now", help="the cut-off time (ISO; default: now); keys with expiresAt <= it are purged"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
