"""A source record's raw text, as the rejected table keeps a malformed one: the values it may
name its data subject by. The job's tombstone check and forget's matcher both read it here."""

from __future__ import annotations

import csv
import json


def raw_record_values(
    raw: str | None, source_format: str, subject_field: str, delimiter: str
) -> list[str] | None:
    """The values a malformed record's raw text may name its subject by: every CSV field, or a
    JSON record's subject field. None when a JSON record does not parse (callers that know the
    ids in clear may still search its text)."""
    if not isinstance(raw, str):
        return []
    if source_format == "json":
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        value = doc.get(subject_field) if isinstance(doc, dict) else None
        return [] if value is None else [str(value)]
    try:
        fields = next(csv.reader([raw], delimiter=delimiter), [])
    except csv.Error:
        fields = raw.split(delimiter)
    return [f.strip() for f in fields if f.strip()]
