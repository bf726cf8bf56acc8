"""Event timestamps: Java DateTimeFormatter patterns parsed in Spark, without Python UDFs.

STRM configured event times with a `java.time.format.DateTimeFormatter` pattern plus a default
time zone. Patterns are checked on the driver (a bad pattern is a config error, not a job that
rejects every row) and compiled once into Spark SQL expressions:

* native: every letter means the same to Spark, so the text is parsed by `try_to_timestamp`
  with the pattern itself (letters renamed where only the name differs: u->y, v->z, L->M),
  guarded by an exact Java-structure regex where Spark is laxer than Java (case of text and
  literals, width of fractions);
* rewritten: the pattern becomes a regex (Java's parse rules: fixed widths, adjacent value
  parsing, greedy optional sections, case-sensitive text); one `regexp_replace` splits the text
  into its fields, fields Spark cannot parse are converted (nano-of-second to a 9-digit
  fraction, milli/nano-of-day to a time, week dates and modified Julian days to a date), and
  the fields are parsed by `try_to_timestamp` with a canonical Spark pattern. Fields that only
  restate the date (day of week, quarter, week numbers) are checked against it.

Both paths append the default zone as a `VV` field when the text has none, so results never
depend on the Spark session time zone; an offset in the text wins over any zone. Text that does
not parse gives null. docs/timestamps.md lists the letters and how each is handled.

Where the UDF jar is on the class path, patterns Spark cannot parse itself go to the JVM
function strm_parse_timestamp_jvm instead of the rewritten path: java.time's DateTimeFormatter
with the same rules (io.strmspark.StrmParseTimestamp), 2 to 3 times faster (bench/timestamps.py,
docs/timestamps.md). Without the jar (Spark Connect, Databricks serverless) the rewritten path
parses them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from strm_spark import jvm
from strm_spark.errors import UnsupportedError
from strm_spark.timestamps.dates import (
    _MAX_EPOCH_DAY,
    _MJD_EPOCH_DAY,
    _REDUCED_WEEK_YEAR_BASE,
    _WEEK_START,
    _agrees_with_date,
    _epoch_date,
    _int,
    _local_dow,
    _lookup,
    _resolve_week_month,
    _resolve_week_year,
    _within,
)
from strm_spark.timestamps.pattern import _OFFSET_LETTERS, _ZONE_ID_LETTERS, _ZONE_LETTERS, _texts
from strm_spark.timestamps.plan import (
    _NATIVE_LETTERS,
    _Field,
    _Plan,
    _plan,
    _rx_field,
    _spark_letters,
)

JVM_PARSER = "strm_parse_timestamp_jvm"


def parse_event_time(
    value: Column, pattern: str, default_time_zone: str, engine: str = "auto"
) -> Column:
    """Parse text to a TIMESTAMP; an offset or zone in the text wins over the default zone.

    Without a zone in the text, the default zone id is parsed as a `VV` field, so the result
    does not depend on the Spark session time zone (DST gaps and overlaps resolve as in
    java.time). Unparseable text gives null.

    `engine` chooses how a pattern Spark cannot parse itself is parsed: 'auto' with the JVM
    function when the UDF jar is on the class path, else with Spark SQL expressions (the
    rewritten path); 'jvm' or 'expressions' force one. Patterns Spark parses natively always
    take the native path.
    """
    if engine not in ("auto", "jvm", "expressions"):
        raise UnsupportedError(f"unknown engine {engine!r}; expected auto, jvm or expressions")
    plan = _plan(pattern)
    session = SparkSession.getActiveSession()
    policy = "spark.sql.legacy.timeParserPolicy"
    if session is not None and session.conf.get(policy, "CORRECTED").upper() == "LEGACY":
        raise UnsupportedError(
            f"{policy}=LEGACY parses with java.text.SimpleDateFormat, which has "
            "other pattern letters; set it to CORRECTED (Spark's default)"
        )
    if plan.spark_pattern is not None:
        return _parse_native(value, plan, default_time_zone)
    if engine != "expressions" and register_jvm_parser(session, required=engine == "jvm"):
        return _parse_jvm(value, pattern, default_time_zone)
    return _parse_rewritten(value, plan, default_time_zone)


def register_jvm_parser(session: SparkSession | None, required: bool = False) -> bool:
    """Register strm_parse_timestamp_jvm if the UDF jar is on the class path; False if not (or,
    when `required`, an error)."""
    if jvm.register(session, jvm.TIMESTAMPS):
        return True
    if required:
        raise UnsupportedError(
            "the JVM timestamp parser is not on the class path; run `make udf` "
            "(or pass strm-spark-udf.jar with --jars)"
        )
    return False


def _parse_jvm(value: Column, pattern: str, zone: str) -> Column:
    """java.time's DateTimeFormatter in the JVM function (epoch milliseconds, truncated), with
    the rules of the other paths; the TIMESTAMP holds whole milliseconds."""
    millis = F.call_function(JVM_PARSER, value, F.lit(pattern), F.lit(zone))
    return F.timestamp_millis(millis)


def _parse_native(value: Column, plan: _Plan, zone: str) -> Column:
    """Spark parses the pattern itself; a regex rejects what Java would reject but Spark not."""
    assert plan.spark_pattern is not None
    if plan.zone_required:
        ts = F.try_to_timestamp(value, F.lit(plan.spark_pattern))
    else:
        text = F.concat(value, F.lit(plan.sep + zone))
        ts = F.try_to_timestamp(text, F.lit(plan.spark_pattern + plan.sep + "VV"))
    return F.when(value.rlike(plan.regex), ts) if plan.needs_check else ts


@dataclass(frozen=True)
class _Chunk:
    """A converted field of the canonical text: its text, Spark letters, and if it may be empty."""

    text: Column
    spark: str
    optional: bool


def _unless_absent(f: _Field, raw: Column, text: Column) -> Column:
    """A computed chunk, empty when its optional field is absent."""
    return F.when(raw == "", F.lit("")).otherwise(text) if f.optional else text


def _resolving(plan: _Plan) -> dict[str, _Field]:
    """The fields java.time resolves the date from, when it is not the standard y-M-d / y-D."""

    def first(letters: str) -> _Field:
        return next(f for f in plan.fields if f.tok.letter in letters)

    if plan.date_source == "mjd":
        return {"g": first("g")}
    if plan.date_source == "week-year":
        return {"Y": first("Y"), "w": first("w"), "dow": first("Eec")}
    if plan.date_source == "week-month":
        return {"y": first("yu"), "M": first("ML"), "W": first("W"), "dow": first("Eec")}
    return {}


def _parse_rewritten(value: Column, plan: _Plan, zone: str) -> Column:
    """Match the compiled regex once, convert fields Spark cannot read, parse canonical text.

    `regexp_replace` writes the fields Spark reads as they are (each after a separator) and
    then, after a second separator, the fields that need converting or checking; the latter are
    converted and appended. One regex match per row; no split unless several fields need work.
    """
    sep, raw_sep = plan.sep, plan.raw_sep
    fields = plan.fields
    zone_fields = [f for f in fields if f.tok.letter in _ZONE_LETTERS]
    has_offsets = any(f.tok.letter in _OFFSET_LETTERS for f in zone_fields)
    has_zone_ids = any(f.tok.letter in _ZONE_ID_LETTERS for f in zone_fields)
    resolving = _resolving(plan)
    used = {f.group for f in resolving.values()}
    checks = [f for f in fields if f.tok.letter in "EecQqYwWg" and f.group not in used]

    def as_is(f: _Field) -> bool:  # Spark reads the field's text unchanged
        return (
            f.tok.letter in _NATIVE_LETTERS
            and not f.tok.pad
            and not (f.tok.letter in _ZONE_ID_LETTERS and has_offsets)
        )

    def needs_raw(f: _Field) -> bool:
        letter = f.tok.letter
        return (
            not as_is(f)
            or (plan.date_source == "week-month" and letter in "yuML")
            or (bool(checks) and plan.date_source == "standard" and letter in "GyuMLdD")
            or (not plan.zone_required and letter in _ZONE_LETTERS)
            or (has_zone_ids and letter in _OFFSET_LETTERS)
        )

    # One match: fields Spark reads as they are, then the raw fields that need work.
    direct = [f for f in fields if as_is(f)]
    raw_fields = [f for f in fields if needs_raw(f)]
    prefix, raws = _match(value, plan, zone, direct, raw_fields, bool(zone_fields))
    spark = "".join(sep + _optional(_spark_letters(f.tok), f.optional) for f in direct)
    if not zone_fields:  # the default zone, parsed as a zone id
        spark += sep + "VV"

    chunks: list[_Chunk] = []  # converted fields, appended after the direct ones
    values: dict[int, Column] = {}  # field group -> number (day of week as ISO 1-7, ...)
    for f in raw_fields:
        if f.tok.letter in _ZONE_ID_LETTERS and has_offsets:  # an offset in the text wins
            any_offset = functools.reduce(
                lambda a, b: a | b,
                [raws[o.group] != "" for o in zone_fields if o.tok.letter in _OFFSET_LETTERS],
            )
            text = F.when(any_offset, F.lit("")).otherwise(raws[f.group])
            chunks.append(_Chunk(text, _spark_letters(f.tok), True))
            continue
        chunk, number = _converted(f, raws[f.group], as_is(f))
        if chunk is not None:
            chunks.append(chunk)
        if number is not None:
            values[f.group] = number
    if zone_fields and not plan.zone_required:  # the default zone when the text has none
        absent = functools.reduce(lambda a, b: a & b, [raws[f.group] == "" for f in zone_fields])
        chunks.append(_Chunk(F.when(absent, F.lit(zone)).otherwise(F.lit("")), "VV", True))

    # A date from week fields or a modified Julian day, as java.time resolves it.
    epoch_day = _resolved_epoch_day(resolving, values)
    if epoch_day is not None:  # y, M, d in the text are cross-checked by Spark's parser
        chunks.append(_Chunk(_epoch_date(epoch_day).cast("string"), "yyyy-MM-dd", False))

    # Day of week, quarter and week numbers that only restate the date: check them against it.
    valid = _restated_fields_agree(checks, epoch_day, raw_fields, raws, values, sep)

    # Null (a rejected row) when the text holds a separator: its fields could not be told apart.
    guard = F.when(~value.contains(sep) & ~value.contains(raw_sep) & valid, F.lit(""))
    text = F.concat(prefix, *[x for c in chunks for x in (F.lit(sep), c.text)], guard)
    spark += "".join(sep + _optional(c.spark, c.optional) for c in chunks)
    return F.try_to_timestamp(text, F.lit(spark))


def _match(
    value: Column,
    plan: _Plan,
    zone: str,
    direct: list[_Field],
    raw_fields: list[_Field],
    has_zone: bool,
) -> tuple[Column, dict[int, Column]]:
    """One `regexp_replace` of the compiled regex: the text of the fields Spark reads as they
    are (each after a separator, the default zone appended when the text has none), and the raw
    text of each field that needs converting or checking, by capture group."""
    sep, raw_sep = plan.sep, plan.raw_sep
    replacement = "".join(f"{sep}${f.group}" for f in direct)
    if not has_zone:
        replacement += sep + zone.replace("\\", "\\\\").replace("$", "\\$")
    if raw_fields:
        replacement += raw_sep + sep.join(f"${f.group}" for f in raw_fields)
    replaced = F.regexp_replace(value, plan.regex, replacement)
    prefix = F.substring_index(replaced, raw_sep, 1)
    raw_text = F.substring_index(replaced, raw_sep, -1)
    parts = F.split(raw_text, sep) if len(raw_fields) > 1 else None
    raws: dict[int, Column] = {}
    for i, f in enumerate(raw_fields):
        raw = raw_text if parts is None else F.get(parts, i)
        if f.tok.pad:  # Java: spaces, then the field ending exactly at the pad width
            check = "^ *+(?:" + _rx_field(f.tok) + r")\z"
            raw = F.when(raw == "", raw).when(raw.rlike(check), F.ltrim(raw))
        raws[f.group] = raw
    return prefix, raws


def _converted(f: _Field, raw: Column, as_is: bool) -> tuple[_Chunk | None, Column | None]:
    """A raw field Spark cannot read as it is: the text it becomes (a chunk parsed with a Spark
    pattern) and/or the number it stands for (checked against, or resolving, the date)."""
    letter, count = f.tok.letter, f.tok.count
    if letter in _NATIVE_LETTERS:
        chunk = None if as_is else _Chunk(raw, _spark_letters(f.tok), f.optional)  # padded
        number = None
        if letter in "yu":
            number = _int(raw) + 2000 if count == 2 else _int(raw)
        elif letter in "ML":
            number = _int(raw) if count <= 2 else _lookup(raw, _texts(letter, count))
        return chunk, number
    if letter == "n":
        nanos = _within(_int(raw), 0, 999_999_999).cast("string")
        return _Chunk(_unless_absent(f, raw, F.lpad(nanos, 9, "0")), "S" * 9, f.optional), None
    if letter in "AN":
        unit = 1_000_000 if letter == "A" else 1
        total = _within(_int(raw), 0, 86_400_000_000_000 // unit - 1)
        secs = F.floor(total / F.lit(1_000_000_000 // unit))
        text = F.format_string(
            "%02d:%02d:%02d." + ("%03d" if letter == "A" else "%09d"),
            F.floor(secs / F.lit(3600)),
            F.floor(secs / F.lit(60)) % 60,
            secs % 60,
            total % (1_000_000_000 // unit),
        )
        pattern = "HH:mm:ss." + ("SSS" if letter == "A" else "S" * 9)
        return _Chunk(_unless_absent(f, raw, text), pattern, f.optional), None
    if letter == "E" or (letter in "ec" and count >= 3):
        return None, _lookup(raw, _texts(letter, count))
    if letter in "ec":  # localized number: 1 is the first day of the week
        return None, F.pmod(_within(_int(raw), 1, 7) + (_WEEK_START - 2), F.lit(7)) + 1
    if letter in "Qq":
        return None, _int(raw) if count <= 2 else _lookup(raw, _texts(letter, count))
    if letter == "Y":
        return None, _int(raw) + _REDUCED_WEEK_YEAR_BASE if count == 2 else _int(raw)
    if letter in "wW":
        return None, _int(raw)
    if letter == "g":  # bounded: later arithmetic must not overflow (ANSI raises)
        return None, _within(_int(raw), 0, _MAX_EPOCH_DAY + _MJD_EPOCH_DAY)
    raise AssertionError(letter)


def _resolved_epoch_day(resolving: dict[str, _Field], values: dict[int, Column]) -> Column | None:
    """The epoch day that week fields or a modified Julian day give, if the pattern has them."""
    if "g" in resolving:
        return values[resolving["g"].group] - _MJD_EPOCH_DAY
    if "Y" in resolving:
        return _resolve_week_year(
            values[resolving["Y"].group],
            values[resolving["w"].group],
            _local_dow(values[resolving["dow"].group]),
        )
    if "W" in resolving:
        return _resolve_week_month(
            values[resolving["y"].group],
            values[resolving["M"].group],
            values[resolving["W"].group],
            _local_dow(values[resolving["dow"].group]),
        )
    return None


def _restated_fields_agree(
    checks: list[_Field],
    epoch_day: Column | None,
    raw_fields: list[_Field],
    raws: dict[int, Column],
    values: dict[int, Column],
    sep: str,
) -> Column:
    """Whether the fields that only restate the date (day of week, quarter, week numbers) agree
    with it; true when there are none."""
    if not checks:
        return F.lit(True)
    if epoch_day is None:  # the standard date fields, parsed alone in UTC
        dated = [f for f in raw_fields if f.tok.letter in "GyuMLdD"]
        text = F.concat(
            *[x for f in dated for x in (F.lit(sep), raws[f.group])], F.lit(sep + "UTC")
        )
        pattern = "".join(sep + _optional(_spark_letters(f.tok), f.optional) for f in dated)
        ts = F.try_to_timestamp(text, F.lit(pattern + sep + "VV"))
        epoch_day = F.floor(F.unix_seconds(ts) / F.lit(86_400))
    key = {"e": "E", "c": "E", "q": "Q"}
    return _agrees_with_date(
        epoch_day,
        [
            (
                key.get(f.tok.letter, f.tok.letter),
                values[f.group],
                raws[f.group] == "" if f.optional else None,
            )
            for f in checks
        ],
    )


def _optional(letters: str, optional: bool) -> str:
    """Spark letters, in an optional section when the field may be absent.

    Separators are control characters: literals without quotes (a quoted one would merge with
    a quoted literal before it).
    """
    return f"[{letters}]" if optional else letters


def epoch_millis(ts: Column) -> Column:
    return F.unix_millis(ts)


def utc_day(epoch_ms: Column) -> Column:
    """The UTC calendar day of an epoch-millisecond instant, independent of session time zone."""
    return F.date_from_unix_date(F.floor(epoch_ms / F.lit(86_400_000)).cast("int"))
