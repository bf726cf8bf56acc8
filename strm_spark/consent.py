"""Consent of a row and the CUMULATIVE / GRANULAR purpose rules of derived outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column
from pyspark.sql import functions as F

CUMULATIVE = "CUMULATIVE"
GRANULAR = "GRANULAR"

_LIST = r"^\s*\[\s*(\d{1,9}\s*(,\s*\d{1,9}\s*)*)?\]\s*$"
_SINGLE = r"^\s*\d{1,9}\s*$"


def _int_array(levels: Sequence[int]) -> Column:
    return F.array(*[F.lit(int(v)) for v in levels]).cast("array<int>")


def consent_levels(
    value: Column | None,
    default_levels: Sequence[int],
    mapping: Sequence[tuple[str, Sequence[int]]] = (),
) -> Column:
    """array<int> of a row's purpose levels: the mapping's entry for the value, else the value
    parsed as `[1,2]` or `1`, else the default levels. Without an extractor, the default."""
    default = _int_array(default_levels)
    if value is None:
        return default
    text = value.cast("string")
    inner = F.regexp_extract(text, r"^\s*\[(.*)\]\s*$", 1)
    parsed_list = F.when(F.trim(inner) == "", _int_array([])).otherwise(
        F.transform(F.split(inner, ","), lambda x: F.trim(x).cast("int"))
    )
    parsed = F.when(text.rlike(_LIST), parsed_list).when(
        text.rlike(_SINGLE), F.array(F.trim(text).cast("int"))
    )
    result = F.coalesce(parsed, default)
    if mapping:
        lookup = F.create_map(
            *[c for key, levels in mapping for c in (F.lit(key), _int_array(levels))]
        )
        result = F.coalesce(F.try_element_at(lookup, text), result)
    return F.when(value.isNull(), default).otherwise(result)


def allows(consent: Sequence[int], consent_type: str, levels: Sequence[int]) -> bool:
    """Whether a row with these consent levels passes a derived output's rule."""
    if consent_type == CUMULATIVE:
        return bool(consent) and max(consent) >= levels[0]
    return bool(levels) and set(levels) <= set(consent)


def allows_column(consent: Column, consent_type: str, levels: Sequence[int]) -> Column:
    """Column version of `allows`, on an array<int> consent column."""
    if consent_type == CUMULATIVE:
        return F.coalesce(F.array_max(consent) >= F.lit(levels[0]), F.lit(False))
    return F.size(F.array_except(_int_array(levels), F.coalesce(consent, _int_array([])))) == 0


def decrypted_fields(
    pii_levels: Mapping[str, int], consent_type: str, levels: Sequence[int]
) -> tuple[str, ...]:
    """PII fields decrypted in a derived output: purpose level 0..n (CUMULATIVE n), or
    purpose level in the set (GRANULAR). The rest stay ciphertext."""
    if consent_type == CUMULATIVE:
        return tuple(f for f, lvl in pii_levels.items() if lvl <= levels[0])
    wanted = set(levels)
    return tuple(f for f, lvl in pii_levels.items() if lvl in wanted)
