"""The subjects commands' arguments: subject ids from the command line or a file, timestamps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from strm_spark.errors import SubjectsError


def parse_timestamp(text: str) -> datetime:
    """`--now`: an ISO date or date-time; without an offset it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SubjectsError(
            f"--now: expected an ISO date or date-time like 2030-01-01T00:00:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _clean(text: str) -> str:
    """An id as written: without a byte-order mark and surrounding white space."""
    return text.replace("\ufeff", "").strip()


def read_subject_ids(values: Sequence[str], from_file: str | None) -> list[str]:
    """Subject ids from the command line and/or a file ('-' for stdin), one per line, read the
    way a person writes them: a byte-order mark, CRLF line ends, blank lines and spaces around
    an id are not part of it. Keeping ids out of argv keeps them out of shell history and
    process listings."""
    ids = [v for v in (_clean(v) for v in values) if v]
    if from_file:
        import sys

        text = (
            sys.stdin.read()
            if from_file == "-"
            else Path(from_file).read_text(encoding="utf-8-sig")
        )
        ids += [v for v in (_clean(line) for line in text.splitlines()) if v]
    if not ids:
        raise SubjectsError("no subject ids given (as arguments or with --from-file)")
    return ids
