"""Java patterns: checked on the driver, parsed natively in Spark with zones and offsets."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from strm_spark.timestamps import PatternError, check_pattern, epoch_millis, parse_event_time, utc_day


@pytest.mark.parametrize(
    ("pattern", "has_zone"),
    [
        ("yyyy-MM-dd HH:mm:ss", False),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", True),
        ("dd/MM/yyyy HH:mm Z", True),
        ("yyyy-MM-dd HH:mm:ss VV", True),
        ("yyyy-MM-dd['T'HH:mm]", False),
        ("yyyy-MM-dd 'o''clock' HH", False),
    ],
)
def test_supported_patterns(pattern, has_zone):
    assert check_pattern(pattern).has_zone is has_zone


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty"),
        ("yyyy-MM-dd HH.mm.ss.nnnnnn:Z", "'n'"),
        ("YYYY-ww", "week-based year"),
        ("yyyy-MM-dd 'T", "unterminated"),
        ("yyyy-MM-dd bb", "unknown pattern letter 'b'"),
        ("yyyy-MM-dd #", "reserved"),
        ("yyyy-MM-dd [HH", "not closed"),
        ("yyyy-MM-dd V", "'VV'"),
        ("'just text'", "no date or time letters"),
    ],
)
def test_bad_patterns(pattern, message):
    with pytest.raises(PatternError, match=message):
        check_pattern(pattern)


def _parse(spark, values, pattern, zone):
    df = spark.createDataFrame([(v,) for v in values], "s string")
    ms = epoch_millis(parse_event_time(F.col("s"), pattern, zone))
    rows = df.select("s", ms.alias("ms"), utc_day(ms).cast("string").alias("day")).collect()
    return {r["s"]: (r["ms"], r["day"]) for r in rows}


def test_default_zone_applies_without_offset(spark):
    got = _parse(spark, ["2010-12-01 08:26:00", "2010-07-01 08:26:00", "not a date", None],
                 "yyyy-MM-dd HH:mm:ss", "Europe/Amsterdam")
    assert got["2010-12-01 08:26:00"] == (1291188360000, "2010-12-01")  # CET, +01:00 (reference page)
    assert got["2010-07-01 08:26:00"][0] == 1277965560000  # CEST, +02:00
    assert got["not a date"] == (None, None)
    assert got[None] == (None, None)


def test_utc_day_across_midnight_depends_on_zone(spark):
    # 00:30 local in Amsterdam is still the previous UTC day; in UTC it is the same day.
    ams = _parse(spark, ["2022-02-07 00:30:00"], "yyyy-MM-dd HH:mm:ss", "Europe/Amsterdam")
    utc = _parse(spark, ["2022-02-07 00:30:00"], "yyyy-MM-dd HH:mm:ss", "UTC")
    assert ams["2022-02-07 00:30:00"] == (1644190200000, "2022-02-06")
    assert utc["2022-02-07 00:30:00"] == (1644193800000, "2022-02-07")


def test_offset_in_text_wins_over_default_zone(spark):
    pattern = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
    got = _parse(spark, ["2022-02-07T00:30:00.999+01:00", "2022-02-06T23:30:00.999Z", "2022-02-07T00:30:00.999"],
                 pattern, "America/New_York")
    assert got["2022-02-07T00:30:00.999+01:00"] == (1644190200999, "2022-02-06")
    assert got["2022-02-06T23:30:00.999Z"] == (1644190200999, "2022-02-06")
    assert got["2022-02-07T00:30:00.999"] == (None, None)  # the pattern demands an offset


def test_millis_are_truncated_not_rounded(spark):
    got = _parse(spark, ["2022-02-06 06.43.12.962083:+0100"], "yyyy-MM-dd HH.mm.ss.SSSSSS:Z", "UTC")
    assert got["2022-02-06 06.43.12.962083:+0100"][0] == 1644126192962


def test_parsing_does_not_depend_on_session_time_zone(spark):
    before = spark.conf.get("spark.sql.session.timeZone")
    try:
        spark.conf.set("spark.sql.session.timeZone", "Asia/Tokyo")
        got = _parse(spark, ["2010-12-01 08:26:00"], "yyyy-MM-dd HH:mm:ss", "Europe/Amsterdam")
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)
    assert got["2010-12-01 08:26:00"] == (1291188360000, "2010-12-01")
