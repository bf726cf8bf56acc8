"""Date arithmetic as Spark expressions, with java.time's rules (ISO weeks starting on Sunday,
minimal days 1): days of week, week numbers, week-based years, and checks of fields that restate
a date against it."""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column
from pyspark.sql import functions as F

# Week fields (Y, w, W, e, c) follow WeekFields of Locale.US: weeks start on Sunday and week 1
# is the week containing 1 January. That is also the JVM default ('en') STRM's jobs ran with.
_WEEK_START = 7  # ISO day of week of the first day of a week (Sunday)


_WEEK_MIN_DAYS = 1  # minimal days of week 1 within the year / month


_REDUCED_WEEK_YEAR_BASE = 2000  # 'YY': week-based year of 2000-01-01 (Java's base date)


_MAX_EPOCH_DAY = 2_932_896  # 9999-12-31


_MJD_EPOCH_DAY = 40_587  # modified Julian day of 1970-01-01


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
