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
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from strm_spark.errors import UnsupportedError
from strm_spark.timestamps.pattern import _OFFSET_LETTERS, _ZONE_ID_LETTERS, _ZONE_LETTERS, _texts
from strm_spark.timestamps.plan import (
    _NATIVE_LETTERS,
    _Field,
    _Plan,
    _plan,
    _rx_field,
    _spark_letters,
)

# Week fields (Y, w, W, e, c) follow WeekFields of Locale.US: weeks start on Sunday and week 1
# is the week containing 1 January. That is also the JVM default ('en') STRM's jobs ran with.
_WEEK_START = 7  # ISO day of week of the first day of a week (Sunday)


_WEEK_MIN_DAYS = 1  # minimal days of week 1 within the year / month


_REDUCED_WEEK_YEAR_BASE = 2000  # 'YY': week-based year of 2000-01-01 (Java's base date)


_MAX_EPOCH_DAY = 2_932_896  # 9999-12-31


_MJD_EPOCH_DAY = 40_587  # modified Julian day of 1970-01-01


def parse_event_time(value: Column, pattern: str, default_time_zone: str) -> Column:
    """Parse text to a TIMESTAMP; an offset or zone in the text wins over the default zone.

    Without a zone in the text, the default zone id is parsed as a `VV` field, so the result
    does not depend on the Spark session time zone (DST gaps and overlaps resolve as in
    java.time). Unparseable text gives null.
    """
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
    return _parse_rewritten(value, plan, default_time_zone)


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


def _int(raw: Column) -> Column:
    return raw.try_cast("long")


def _lookup(raw: Column, pairs: tuple[tuple[str, int], ...]) -> Column:
    expr = F.when(raw == pairs[0][0], F.lit(pairs[0][1]))
    for text, val in pairs[1:]:
        expr = expr.when(raw == text, F.lit(val))
    return expr


def _within(col: Column, lo: int, hi: int) -> Column:
    """col when lo <= col <= hi, else null."""
    return F.when(col.between(lo, hi), col)


def _let(body: Callable[..., Column], **values: Column) -> Column:
    """body(**values), each value evaluated once per row.

    Column expressions are trees: a value used n times is copied n times, and the week
    arithmetic nests such uses deeply enough to grow to hundreds of thousands of nodes (slow to
    plan). Bound as lambda variables (of `transform` over a one-element array) the tree stays
    small; Spark evaluates that part without code generation, which is fine for rare patterns.
    """
    bound = F.array(F.struct(*[v.alias(k) for k, v in values.items()]))
    return F.get(F.transform(bound, lambda s: body(**{k: s[k] for k in values})), 0)


def _iso_dow(epoch_day: Column) -> Column:
    return F.pmod(epoch_day + 3, F.lit(7)) + 1  # 1970-01-01 was a Thursday (4)


def _local_dow(iso_dow: Column) -> Column:
    return F.pmod(iso_dow - _WEEK_START, F.lit(7)) + 1


def _week_offset(day: Column, local_dow: Column) -> Column:
    """java.time WeekFields' startOfWeekOffset: where week 1 starts relative to day 1."""
    week_start = F.pmod(day - local_dow, F.lit(7))
    return F.when(week_start + 1 > _WEEK_MIN_DAYS, 7 - week_start).otherwise(-week_start)


def _week_number(offset: Column, day: Column) -> Column:
    return F.floor((offset + day + 6) / F.lit(7))  # WeekFields' computeWeek


def _year_length(year: Column) -> Column:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return F.when(leap, 366).otherwise(365)


def _epoch_date(epoch_day: Column) -> Column:
    """DATE of an epoch day (null beyond the int range; Spark rejects years past 9999 later)."""
    return F.date_from_unix_date(epoch_day.try_cast("int"))


_Expected = list[tuple[str, Column, "Column | None"]]  # (field key, value, absent)


def _agrees_with_date(epoch_day: Column, expected: _Expected) -> Column:
    """Whether each (field, value, absent) agrees with the date, as java.time cross-checks.

    Fields: "E" ISO day of week, "Q" quarter, "g" modified Julian day, "Y" week-based year,
    "w" week of week-based year, "W" week of month; `absent` (or None) marks an optional field
    that is missing, which passes. Week numbers are computed from bound variables (`_let`).
    """

    def week_numbers(day: Column, year: Column, doy: Column, dom: Column) -> Column:
        offset = _week_offset(doy, _local_dow(_iso_dow(day)))
        week = _week_number(offset, doy)
        new_year_week = _week_number(offset, _year_length(year) + _WEEK_MIN_DAYS)
        prev_len = _year_length(year - 1)  # a day in week 0 is in the previous year's last week
        prev_week = _week_number(_week_offset(prev_len, _local_dow(_iso_dow(day - doy))), prev_len)
        actual = {
            "Y": F.when(week == 0, year - 1).when(week >= new_year_week, year + 1).otherwise(year),
            "w": (
                F.when(week == 0, prev_week)
                .when(week >= new_year_week, week - new_year_week + 1)
                .otherwise(week)
            ),
            "W": _week_number(_week_offset(dom, _local_dow(_iso_dow(day))), dom),
        }
        return _all_agree(actual, [e for e in expected if e[0] in actual])

    def with_day(day: Column) -> Column:
        date = _epoch_date(day)
        return _let(
            lambda **parts: week_numbers(day, **parts),
            year=F.year(date),
            doy=F.dayofyear(date),
            dom=F.dayofmonth(date),
        )

    actual = {
        "E": _iso_dow(epoch_day),
        "Q": F.quarter(_epoch_date(epoch_day)),
        "g": epoch_day + _MJD_EPOCH_DAY,
    }
    ok = _all_agree(actual, [e for e in expected if e[0] in actual])
    if any(e[0] in "YwW" for e in expected):
        ok = ok & F.coalesce(_let(with_day, day=epoch_day), F.lit(False))
    return ok


def _all_agree(actual: dict[str, Column], expected: _Expected) -> Column:
    ok = F.lit(True)
    for key, value, absent in expected:
        agrees = F.coalesce(value == actual[key], F.lit(False))
        ok = ok & (agrees if absent is None else absent | agrees)
    return ok


def _week_start(epoch_day: Column) -> Column:
    """Epoch day of the first day of the week containing the day."""
    return epoch_day - F.pmod(_iso_dow(epoch_day) - _WEEK_START, F.lit(7))


def _resolve_week_year(week_year: Column, week: Column, local_dow: Column) -> Column:
    """Epoch day of (week-based year, week, day of week), as java.time's ofWeekBasedYear.

    Week 1 is the week holding January `_WEEK_MIN_DAYS` (so at least that many days of the
    year); a week past the year's last is clamped to it, as Java does. Written with few repeated
    references: each repeats the whole field-extraction expression.
    """
    year = F.when(week_year.between(1, 9999) & week.between(1, 53), week_year)
    jan_min = F.unix_date(F.make_date(year, F.lit(1), F.lit(_WEEK_MIN_DAYS)))
    year_length = F.dayofyear(F.make_date(year, F.lit(12), F.lit(31)))
    start, next_start = _week_start(jan_min), _week_start(jan_min + year_length)
    last_week = F.floor((next_start - start) / F.lit(7))
    return start + (F.least(week, last_week) - 1) * 7 + (local_dow - 1)


def _resolve_week_month(year: Column, month: Column, week: Column, local_dow: Column) -> Column:
    """Epoch day of (year, month, week of month, day of week), as java.time's resolveWoM.

    Week 1 of a month is the week holding its day `_WEEK_MIN_DAYS`. The inputs are bound once:
    a month name is a long CASE expression.
    """

    def resolve(year: Column, month: Column, week: Column, dow: Column) -> Column:
        ok = year.between(1, 9999) & month.between(1, 12) & week.between(0, 6)
        day = F.make_date(F.when(ok, year), F.when(ok, month), F.lit(_WEEK_MIN_DAYS))
        return _week_start(F.unix_date(day)) + (week - 1) * 7 + (dow - 1)

    return _let(resolve, year=year, month=month, week=week, dow=local_dow)


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

    # The replacement: fields Spark reads as they are, then the raw fields that need work.
    direct = [f for f in fields if as_is(f)]
    raw_fields = [f for f in fields if needs_raw(f)]
    replacement = "".join(f"{sep}${f.group}" for f in direct)
    spark = "".join(sep + _optional(_spark_letters(f.tok), f.optional) for f in direct)
    if not zone_fields:  # the default zone, parsed as a zone id
        replacement += sep + zone.replace("\\", "\\\\").replace("$", "\\$")
        spark += sep + "VV"
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

    chunks: list[_Chunk] = []  # converted fields, appended after the direct ones
    values: dict[int, Column] = {}  # field group -> number (day of week as ISO 1-7, ...)
    for f in raw_fields:
        raw, letter, count = raws[f.group], f.tok.letter, f.tok.count
        if letter in _ZONE_ID_LETTERS and has_offsets:  # an offset in the text wins
            any_offset = functools.reduce(
                lambda a, b: a | b,
                [raws[o.group] != "" for o in zone_fields if o.tok.letter in _OFFSET_LETTERS],
            )
            chunks.append(
                _Chunk(F.when(any_offset, F.lit("")).otherwise(raw), _spark_letters(f.tok), True)
            )
        elif letter in _NATIVE_LETTERS:
            if not as_is(f):  # padded
                chunks.append(_Chunk(raw, _spark_letters(f.tok), f.optional))
            if letter in "yu":
                values[f.group] = _int(raw) + 2000 if count == 2 else _int(raw)
            elif letter in "ML":
                values[f.group] = _int(raw) if count <= 2 else _lookup(raw, _texts(letter, count))
        elif letter == "n":
            nanos = _within(_int(raw), 0, 999_999_999).cast("string")
            chunks.append(
                _Chunk(_unless_absent(f, raw, F.lpad(nanos, 9, "0")), "S" * 9, f.optional)
            )
        elif letter in "AN":
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
            chunks.append(
                _Chunk(
                    _unless_absent(f, raw, text),
                    "HH:mm:ss." + ("SSS" if letter == "A" else "S" * 9),
                    f.optional,
                )
            )
        elif letter == "E" or (letter in "ec" and count >= 3):
            values[f.group] = _lookup(raw, _texts(letter, count))
        elif letter in "ec":  # localized number: 1 is the first day of the week
            values[f.group] = F.pmod(_within(_int(raw), 1, 7) + (_WEEK_START - 2), F.lit(7)) + 1
        elif letter in "Qq":
            values[f.group] = _int(raw) if count <= 2 else _lookup(raw, _texts(letter, count))
        elif letter == "Y":
            values[f.group] = _int(raw) + _REDUCED_WEEK_YEAR_BASE if count == 2 else _int(raw)
        elif letter in "wW":
            values[f.group] = _int(raw)
        elif letter == "g":  # bounded: later arithmetic must not overflow (ANSI raises)
            values[f.group] = _within(_int(raw), 0, _MAX_EPOCH_DAY + _MJD_EPOCH_DAY)
        else:
            raise AssertionError(letter)
    if zone_fields and not plan.zone_required:  # the default zone when the text has none
        absent = functools.reduce(lambda a, b: a & b, [raws[f.group] == "" for f in zone_fields])
        chunks.append(_Chunk(F.when(absent, F.lit(zone)).otherwise(F.lit("")), "VV", True))

    # A date from week fields or a modified Julian day, as java.time resolves it.
    epoch_day: Column | None = None
    if "g" in resolving:
        epoch_day = values[resolving["g"].group] - _MJD_EPOCH_DAY
    elif "Y" in resolving:
        epoch_day = _resolve_week_year(
            values[resolving["Y"].group],
            values[resolving["w"].group],
            _local_dow(values[resolving["dow"].group]),
        )
    elif "W" in resolving:
        epoch_day = _resolve_week_month(
            values[resolving["y"].group],
            values[resolving["M"].group],
            values[resolving["W"].group],
            _local_dow(values[resolving["dow"].group]),
        )
    if epoch_day is not None:  # y, M, d in the text are cross-checked by Spark's parser
        chunks.append(_Chunk(_epoch_date(epoch_day).cast("string"), "yyyy-MM-dd", False))

    # Day of week, quarter and week numbers that only restate the date: check them against it.
    valid = F.lit(True)
    if checks:
        if epoch_day is None:  # the standard date fields, parsed alone in UTC
            dated = [f for f in raw_fields if f.tok.letter in "GyuMLdD"]
            text = F.concat(
                *[x for f in dated for x in (F.lit(sep), raws[f.group])], F.lit(sep + "UTC")
            )
            pattern = "".join(sep + _optional(_spark_letters(f.tok), f.optional) for f in dated)
            ts = F.try_to_timestamp(text, F.lit(pattern + sep + "VV"))
            epoch_day = F.floor(F.unix_seconds(ts) / F.lit(86_400))
        key = {"e": "E", "c": "E", "q": "Q"}
        valid = _agrees_with_date(
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

    # Null (a rejected row) when the text holds a separator: its fields could not be told apart.
    guard = F.when(~value.contains(sep) & ~value.contains(raw_sep) & valid, F.lit(""))
    text = F.concat(prefix, *[x for c in chunks for x in (F.lit(sep), c.text)], guard)
    spark += "".join(sep + _optional(c.spark, c.optional) for c in chunks)
    return F.try_to_timestamp(text, F.lit(spark))


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
