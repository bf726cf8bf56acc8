"""A source record's raw text, as the rejected table keeps a malformed one: the values it may
name its data subject by. The job's tombstone check and forget's matcher both read it here."""

from __future__ import annotations

import csv
import json
import re

_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"|"((?:[^"\\]|\\.)*)$')
_JSON_SCALAR = re.compile(r"(?<=[:\[,])\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false)\b")


def json_text_values(raw: str) -> list[str]:
    """Every value a JSON text that does not parse may hold: its string literals (decoded, an
    unterminated last one too) and bare numbers and booleans. Any of them may name a subject,
    so a broken record is matched against all of them (field names included: a false match
    drops or finds a broken record, a miss would let a forgotten person back)."""
    values = []
    for m in _JSON_STRING.finditer(raw):
        text = m.group(1) if m.group(1) is not None else m.group(2)
        try:
            values.append(json.loads(f'"{text}"'))
        except ValueError:
            values.append(text)
    values += [m.group(1) for m in _JSON_SCALAR.finditer(raw)]
    return [v.strip() for v in values if v.strip()]


def raw_record_values(
    raw: str | None, source_format: str, subject_field: str, delimiter: str
) -> list[str]:
    """The values a malformed record's raw text may name its subject by: every CSV field, a
    JSON record's subject field, or every value of a JSON text that does not parse."""
    if not isinstance(raw, str):
        return []
    if source_format == "json":
        try:
            doc = json.loads(raw)
        except ValueError:
            return json_text_values(raw)
        value = doc.get(subject_field) if isinstance(doc, dict) else None
        return [] if value is None else [str(value)]
    try:
        fields = next(csv.reader([raw], delimiter=delimiter), [])
    except csv.Error:
        fields = raw.split(delimiter)
    return [f.strip() for f in fields if f.strip()]
