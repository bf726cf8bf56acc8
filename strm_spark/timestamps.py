"""Event timestamps: Java DateTimeFormatter patterns parsed natively in Spark.

The pattern language is Java's. Spark parses with java.time too, but only supports a subset
of the letters; patterns are checked on the driver so that a bad pattern is a config error,
not a job that rejects every row.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

# Letters Spark accepts when *parsing* (Spark datetime pattern reference).
_SPARK_PARSE_LETTERS = set("GyMLdDahKkHmsSVzOXxZ")
# Letters that Java knows but Spark cannot parse with (yet).
_JAVA_ONLY_LETTERS = {
    "u": "year (u)",
    "Y": "week-based year (Y)",
    "w": "week-of-week-based-year (w)",
    "W": "week-of-month (W)",
    "E": "day-of-week text (E)",
    "e": "localized day-of-week (e)",
    "c": "localized day-of-week (c)",
    "F": "aligned week of month (F)",
    "Q": "quarter (Q)",
    "q": "quarter (q)",
    "n": "nano-of-second (n)",
    "N": "nano-of-day (N)",
    "A": "milli-of-day (A)",
    "p": "pad modifier (p)",
    "B": "period of day (B)",
    "g": "modified Julian day (g)",
    "v": "generic time-zone name (v)",
}
_ZONE_LETTERS = set("VzOXxZ")
_RESERVED = set("#{}")
# Separator between the timestamp text and the default zone id appended to it.
_ZONE_SEPARATOR = "\u0001"


class PatternError(ValueError):
    """A Java pattern that is invalid or not supported; the message says which letter."""


@dataclass(frozen=True)
class PatternInfo:
    pattern: str
    has_zone: bool


def check_pattern(pattern: str) -> PatternInfo:
    """Validate a Java DateTimeFormatter pattern for parsing with Spark."""
    if not pattern:
        raise PatternError("the pattern is empty")
    has_zone = False
    has_letter = False
    i = 0
    depth = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            while end != -1 and end + 1 < len(pattern) and pattern[end + 1] == "'":
                end = pattern.find("'", end + 2)
            if end == -1:
                raise PatternError(f"unterminated quoted literal starting at position {i}")
            i = end + 1
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise PatternError(f"']' at position {i} closes no optional section")
        elif ch in _RESERVED:
            raise PatternError(f"{ch!r} at position {i} is reserved in Java patterns")
        elif ch.isascii() and ch.isalpha():
            run = len(pattern[i:]) - len(pattern[i:].lstrip(ch))
            if ch in _JAVA_ONLY_LETTERS:
                raise PatternError(
                    f"pattern letter {ch!r} ({_JAVA_ONLY_LETTERS[ch]}) is not supported for parsing yet"
                )
            if ch not in _SPARK_PARSE_LETTERS:
                raise PatternError(f"unknown pattern letter {ch!r} at position {i}")
            if ch == "V" and run != 2:
                raise PatternError("zone id 'V' must be written 'VV'")
            if ch == "S" and run > 9:
                raise PatternError("fraction of second 'S' takes at most 9 letters")
            has_letter = True
            has_zone = has_zone or ch in _ZONE_LETTERS
            i += run
            continue
        i += 1
    if depth != 0:
        raise PatternError("an optional section '[' is not closed")
    if not has_letter:
        raise PatternError("the pattern has no date or time letters")
    return PatternInfo(pattern, has_zone)


def parse_event_time(value: Column, pattern: str, default_time_zone: str) -> Column:
    """Parse text to a TIMESTAMP; an offset or zone in the text wins over the default zone.

    Without zone letters in the pattern, the default zone id is appended to the text and
    parsed with `VV`, so the result does not depend on the Spark session time zone (and
    DST gaps and overlaps resolve as java.time does). Unparseable text gives null.
    """
    info = check_pattern(pattern)
    if info.has_zone:
        return F.try_to_timestamp(value, F.lit(pattern))
    text = F.concat(value, F.lit(_ZONE_SEPARATOR + default_time_zone))
    return F.try_to_timestamp(text, F.lit(f"{pattern}'{_ZONE_SEPARATOR}'VV"))


def epoch_millis(ts: Column) -> Column:
    return F.unix_millis(ts)


def utc_day(epoch_ms: Column) -> Column:
    """The UTC calendar day of an epoch-millisecond instant, independent of session time zone."""
    return F.date_from_unix_date(F.floor(epoch_ms / F.lit(86_400_000)).cast("int"))
