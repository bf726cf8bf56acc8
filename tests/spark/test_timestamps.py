"""Java patterns: checked on the driver, parsed in Spark with zones and offsets, no Python UDFs:
by Spark SQL expressions, and by the JVM function (java.time) where Spark cannot parse a pattern.

Expected epoch millis marked "Java" come from Java 17:
`Instant.from(DateTimeFormatter.ofPattern(pattern, Locale.US).withZone(defaultZone).parse(text))`
(date-only patterns: start of that day in the zone), generated once and pasted here."""

from __future__ import annotations

from datetime import datetime

import pytest
from pyspark.sql import functions as F

from strm_spark import jvm
from strm_spark.errors import UnsupportedError
from strm_spark.timestamps import parse
from strm_spark.timestamps.parse import (
    _parse_jvm,
    _parse_rewritten,
    epoch_millis,
    parse_event_time,
    register_jvm_parser,
    utc_day,
)
from strm_spark.timestamps.plan import _plan

AMS, NY, UTC = "Europe/Amsterdam", "America/New_York", "UTC"


def _millis(spark, cases, codegen=False):
    """Epoch ms of each (pattern, zone, text) case by every engine, in one Spark job.

    Returns {case: (parse_event_time, rewritten path, JVM function)}: parse_event_time takes the
    native path or, for patterns Spark cannot parse, the JVM function; the rewritten path (Spark
    SQL expressions, used without the UDF jar) and the JVM function are forced for every
    pattern, so all are compared. Whole-stage code generation is off
    unless asked for: compiling one projection of dozens of parsers takes seconds; the tests
    passing codegen=True cover the generated code.
    """
    before = spark.conf.get("spark.sql.codegen.wholeStage")
    spark.conf.set("spark.sql.codegen.wholeStage", str(codegen).lower())
    try:
        return _collect_millis(spark, cases)
    finally:
        spark.conf.set("spark.sql.codegen.wholeStage", before)


def _collect_millis(spark, cases):
    assert register_jvm_parser(spark)
    pairs = sorted({(p, z) for p, z, _ in cases})
    df = spark.createDataFrame([(i, v) for i, (_, _, v) in enumerate(cases)], "i int, s string")
    cols = []
    for k, (pattern, zone) in enumerate(pairs):
        cols.append(epoch_millis(parse_event_time(F.col("s"), pattern, zone)).alias(f"a{k}"))
        rewritten = _parse_rewritten(F.col("s"), _plan(pattern), zone)
        cols.append(epoch_millis(rewritten).alias(f"b{k}"))
        cols.append(epoch_millis(_parse_jvm(F.col("s"), pattern, zone)).alias(f"c{k}"))
    rows = {r["i"]: r.asDict() for r in df.select("i", *cols).collect()}
    out = {}
    for i, (pattern, zone, value) in enumerate(cases):
        k = pairs.index((pattern, zone))
        out[(pattern, zone, value)] = tuple(rows[i][f"{e}{k}"] for e in "abc")
    return out


def _check(spark, vectors, codegen=False):
    got = _millis(spark, [(p, z, v) for p, z, v, _ in vectors], codegen)
    wrong = {
        (p, v): (got[(p, z, v)], want) for p, z, v, want in vectors if got[(p, z, v)] != (want,) * 3
    }
    assert not wrong, wrong


NANO_OF_SECOND = [  # n: nano-of-second as a number of at least as many digits as letters (Java)
    ("yyyy-MM-dd HH.mm.ss.nnnnnn:Z", UTC, "2022-02-06 06.43.12.962083:+0100", 1644126192000),
    ("yyyy-MM-dd HH.mm.ss.nnnnnn:Z", UTC, "2022-02-06 06.43.12.0962083:+0100", 1644126192000),
    ("yyyy-MM-dd HH.mm.ss.nnnnnn:Z", UTC, "2022-02-06 06.43.12.999999999:+0100", 1644126192999),
    ("yyyy-MM-dd HH.mm.ss.nnnnnn:Z", UTC, "2022-02-06 06.43.12.96208:+0100", None),  # too short
    ("yyyy-MM-dd HH.mm.ss.nnnnnn:Z", UTC, "2022-02-06 06.43.12.1000000000:+0100", None),  # > 1 s
    ("yyyy-MM-dd HH:mm:ss.n", AMS, "2022-07-06 06:43:12.5", 1657082592000),
    ("yyyy-MM-dd HH:mm:ss.n", AMS, "2022-07-06 06:43:12.123456789", 1657082592123),
    ("yyyy-MM-dd HH:mm:ss.nnnnnnnnn", UTC, "2022-07-06 06:43:12.000000005", 1657089792000),
    ("yyyy-MM-dd HH:mm:ss.nnnnnnnnn", UTC, "2022-07-06 06:43:12.5", None),
    ("yyyy-MM-dd HH:mm:ss[.nnn]", UTC, "2022-07-06 06:43:12.2000000", 1657089792002),
    ("yyyy-MM-dd HH:mm:ss[.nnn]", UTC, "2022-07-06 06:43:12", 1657089792000),
    ("yyyy-MM-dd HH:mm:ss.SSS nnnnnnnnn", UTC, "2022-07-06 06:43:12.123 123000000", 1657089792123),
    ("yyyy-MM-dd HH:mm:ss.SSS nnnnnnnnn", UTC, "2022-07-06 06:43:12.123 124000000", None),
    ("yyyyMMddHHmmssnnnnnnnnnnnnnnnnnnn", UTC, "202202060643120000000000962083999", 1644129792962),
]


LITERALS_AND_OPTIONAL = [  # quoted literals (with ''), case-sensitive like Java, optional sections
    ("yyyy-MM-dd'T'HH:mm:ss", AMS, "2022-02-06T06:43:12", 1644126192000),
    ("yyyy-MM-dd'T'HH:mm:ss", AMS, "2022-02-06t06:43:12", None),
    ("yyyy-MM-dd 'at' HH:mm", AMS, "2022-02-06 at 06:43", 1644126180000),
    ("yyyy-MM-dd 'at' HH:mm", AMS, "2022-02-06 AT 06:43", None),
    ("yyyy-MM-dd 'o''clock' HH", UTC, "2022-02-06 o'clock 06", 1644127200000),
    ("'['yyyy-MM-dd']' HH''mm", UTC, "[2022-02-06] 06'43", 1644129780000),
    ("yyyy年MM月dd日 HH時", "Asia/Tokyo", "2022年02月06日 06時", 1644094800000),
    ("yyyy-MM-dd['T'HH:mm]", UTC, "2022-02-06", 1644105600000),
    ("yyyy-MM-dd['T'HH:mm]", UTC, "2022-02-06T06:43", 1644129780000),
    ("yyyy-MM-dd['T'HH:mm]", UTC, "2022-02-06T06", None),  # a section is all or nothing
    ("yyyy-MM-dd[ HH", UTC, "2022-02-06 07", 1644130800000),
    ("yyyy-MM-dd[ HH] mm", UTC, "2022-02-06 07 30", 1644132600000),
    ("yyyy-MM-dd[ HH] mm", UTC, "2022-02-06 30", None),  # Java keeps a parsed section
    ("dd MMM yyyy hh:mm a", UTC, "06 Feb 2022 06:43 PM", 1644172980000),
    ("dd MMM yyyy hh:mm a", UTC, "06 Feb 2022 06:43 pm", None),
    ("d/M/yyyy H:m", AMS, "6/2/2022 6:4", 1644123840000),
    ("d/M/yyyy H:m", AMS, "006/02/2022 06:04", 1644123840000),
]


OFFSETS_AND_ZONES = [  # the text's offset or zone wins over the default zone
    ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", NY, "2022-02-07T00:30:00.999+01:00", 1644190200999),
    ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", NY, "2022-02-06T23:30:00.999Z", 1644190200999),
    ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", NY, "2022-02-06T23:30:00.9Z", None),  # SSS: 3 digits
    ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", NY, "2022-02-06T23:30:00.999z", None),
    ("dd/MM/yyyy HH:mm Z", NY, "06/02/2022 06:43 +0100", 1644126180000),
    ("dd/MM/yyyy HH:mm Z", NY, "06/02/2022 06:43 +01:00", None),
    ("dd/MM/yyyy HH:mm x", NY, "06/02/2022 06:43 +0530", 1644109980000),
    ("dd/MM/yyyy HH:mm x", NY, "06/02/2022 06:43 +01", 1644126180000),
    ("dd/MM/yyyy HH:mm O", NY, "06/02/2022 06:43 GMT+1", 1644126180000),
    ("dd/MM/yyyy HH:mm OOOO", NY, "06/02/2022 06:43 GMT-05:00", 1644147780000),
    ("dd/MM/yyyy HH:mm ZZZZZ", NY, "06/02/2022 06:43 Z", 1644129780000),
    ("dd/MM/yyyy HH:mm XXXXX", NY, "06/02/2022 06:43 +01:00:30", 1644126150000),
    ("yyyy-MM-dd HH:mm:ss VV", UTC, "2022-02-06 06:43:12 Europe/Amsterdam", 1644126192000),
    ("yyyy-MM-dd HH:mm:ss VV", UTC, "2022-02-06 06:43:12 +01:00", 1644126192000),
    ("yyyy-MM-dd HH:mm:ss VV", UTC, "2022-02-06 06:43:12 Mars/Olympus", None),
    ("EEE MMM dd HH:mm:ss zzz yyyy", UTC, "Sun Feb 06 06:43:12 CET 2022", 1644126192000),
    (
        "EEE MMM dd HH:mm:ss zzzz yyyy",
        UTC,
        "Sun Feb 06 06:43:12 Pacific Standard Time 2022",
        1644158592000,
    ),
    ("yyyy-MM-dd HH:mm vvvv", UTC, "2022-07-06 06:43 Pacific Time", 1657114980000),
    ("yyyy-MM-dd HH:mm v", UTC, "2022-07-06 06:43 PT", 1657114980000),
    # Offset and zone id: the offset wins (also over the zone's own offset at that time).
    (
        "yyyy-MM-dd'T'HH:mm:ssXXX'['VV']'",
        UTC,
        "2022-10-30T02:30:00+02:00[Europe/Amsterdam]",
        1667089800000,
    ),
    (
        "yyyy-MM-dd'T'HH:mm:ssXXX'['VV']'",
        UTC,
        "2022-10-30T02:30:00+05:00[Europe/Amsterdam]",
        1667079000000,
    ),
    # Optional offset / zone: the default zone only when the text has neither.
    ("yyyy-MM-dd'T'HH:mm:ss[XXX][ VV]", AMS, "2022-10-30T02:30:00", 1667089800000),
    ("yyyy-MM-dd'T'HH:mm:ss[XXX][ VV]", AMS, "2022-10-30T02:30:00+01:00", 1667093400000),
    ("yyyy-MM-dd'T'HH:mm:ss[XXX][ VV]", AMS, "2022-10-30T02:30:00 Asia/Tokyo", 1667064600000),
    ("yyyy-MM-dd'T'HH:mm:ss[XXX][ VV]", AMS, "2022-10-30T02:30:00-03:00 Asia/Tokyo", 1667107800000),
    ("yyyy-MM-dd HH:mm:ss[ z]", "Asia/Tokyo", "2022-02-06 06:43:12", 1644097392000),
    ("yyyy-MM-dd HH:mm:ss[ z]", "Asia/Tokyo", "2022-02-06 06:43:12 CET", 1644126192000),
]


DEFAULT_ZONE_DST = [  # gaps move forward, overlaps take the earlier offset (java.time)
    ("yyyy-MM-dd HH:mm:ss", AMS, "2022-03-27 01:59:59", 1648342799000),
    ("yyyy-MM-dd HH:mm:ss", AMS, "2022-03-27 02:30:00", 1648344600000),  # gap
    ("yyyy-MM-dd HH:mm:ss", AMS, "2022-03-27 03:00:00", 1648342800000),
    ("yyyy-MM-dd HH:mm:ss", AMS, "2022-10-30 02:30:00", 1667089800000),  # overlap
    ("yyyy-MM-dd HH:mm:ss", AMS, "2022-10-30 03:00:00", 1667095200000),
    ("yyyy-MM-dd HH:mm:ss", NY, "2022-03-13 02:30:00", 1647156600000),
    ("yyyy-MM-dd HH:mm:ss", NY, "2022-11-06 01:30:00", 1667712600000),
    ("yyyy-MM-dd HH:mm:ss", "Asia/Kolkata", "2022-02-06 05:29:59", 1644105599000),
    ("yyyy-MM-dd HH:mm:ss", "Asia/Kolkata", "2022-02-06 05:30:00", 1644105600000),
    ("yyyy-MM-dd HH.mm.ss.nnnnnn", AMS, "2022-03-27 02.30.00.000001", 1648344600000),
]


NEW_LETTERS = [  # u, E, e, c, A, N, Q, q, g, p
    ("uuuu-MM-dd HH:mm", AMS, "2022-07-06 06:43", 1657082580000),
    ("uu-MM-dd HH:mm", AMS, "22-07-06 06:43", 1657082580000),
    ("u-M-d H:m", AMS, "2022-7-6 6:43", 1657082580000),
    ("EEE, dd MMM yyyy HH:mm:ss Z", UTC, "Sun, 06 Feb 2022 06:43:12 +0100", 1644126192000),
    ("EEE, dd MMM yyyy HH:mm:ss Z", UTC, "Mon, 06 Feb 2022 06:43:12 +0100", None),  # not a Monday
    ("EEE, dd MMM yyyy HH:mm:ss Z", UTC, "sun, 06 Feb 2022 06:43:12 +0100", None),
    ("EEEE d MMMM yyyy HH:mm", AMS, "Sunday 6 February 2022 06:43", 1644126180000),
    ("EEEE d MMMM yyyy HH:mm", AMS, "Sun 6 February 2022 06:43", None),
    ("yyyy-MM-dd e HH", UTC, "2022-02-06 1 06", 1644127200000),  # Locale.US: 1 is Sunday
    ("yyyy-MM-dd e HH", UTC, "2022-02-06 2 06", None),
    ("yyyy-MM-dd ccc HH", UTC, "2022-02-06 Sun 06", 1644127200000),
    ("yyyy-MM-dd A", AMS, "2022-07-06 23592999", 1657081992999),
    ("yyyy-MM-dd AAAAAAAA", AMS, "2022-07-06 00001000", 1657058401000),
    ("yyyy-MM-dd AAAAAAAA", AMS, "2022-07-06 86400000", None),
    ("yyyy-MM-dd N", AMS, "2022-07-06 23592999123456", 1657081992999),
    ("yyyy-MM-dd N", AMS, "2022-07-06 86400000000000", None),
    ("yyyy-MM-dd HH N", AMS, "2022-07-06 06 23592999123456", 1657081992999),
    ("yyyy-MM-dd HH N", AMS, "2022-07-06 07 23592999123456", None),  # hours disagree
    ("yyyy-MM-dd QQQ HH", UTC, "2022-02-06 Q1 06", 1644127200000),
    ("yyyy-MM-dd QQQ HH", UTC, "2022-02-06 Q2 06", None),
    ("yyyy-MM-dd qqqq HH", UTC, "2022-05-06 2nd quarter 06", 1651816800000),
    ("yyyy-MM-dd Q HH", UTC, "2022-05-06 2 06", 1651816800000),
    ("g HH:mm", AMS, "59616 06:43", 1644126180000),  # modified Julian day
    ("yyyy-MM-dd g HH", UTC, "2022-02-06 59616 06", 1644127200000),
    ("yyyy-MM-dd g HH", UTC, "2022-02-06 59617 06", None),
    ("yyyy-MM-dd ppH:mm", UTC, "2022-02-06  6:43", 1644129780000),  # pad to 2 with spaces
    ("yyyy-MM-dd ppH:mm", UTC, "2022-02-06 6:43", None),
    ("yyyy-MM-dd pppppEEE HH", UTC, "2022-02-06   Sun 06", 1644127200000),
]


WEEK_FIELDS = [  # Y, w, W with Locale.US weeks: Sunday first, week 1 holds 1 January
    ("YYYY-'W'ww-e HH:mm", UTC, "2022-W05-1 06:43", 1642920180000),
    ("YYYY-'W'ww-e HH:mm", UTC, "2022-W01-1 06:43", 1640500980000),
    ("YYYY-'W'ww-e HH:mm", UTC, "2020-W53-7 06:43", 1608964980000),
    ("YYYY-'W'ww-e HH:mm", UTC, "2020-W54-7 06:43", None),
    ("YYYY-'W'ww-e HH:mm", UTC, "2022-W05-8 06:43", None),
    ("YYYY-'W'ww-e HH:mm", UTC, "2015-W19-2 21:24", 1430774640000),
    ("YYYY-'W'ww-e HH:mm", UTC, "2015-W19-02 21:24", None),  # e: exactly one digit
    ("yyyy-MM W e", UTC, "2022-02 02 1", None),  # W: exactly one digit
    ("yyyy-MM-dd c", UTC, "2022-02-06 01", None),
    ("YY-'W'w-EEE HH:mm", AMS, "22-W5-Mon 06:43", 1643002980000),
    ("yyyy-MM-dd YYYY ww HH", UTC, "2021-12-26 2022 01 06", 1640498400000),
    ("yyyy-MM-dd YYYY ww HH", UTC, "2021-12-25 2021 52 06", 1640412000000),
    ("yyyy-MM-dd YYYY ww HH", UTC, "2021-12-25 2022 52 06", None),
    ("yyyy-MMM W e HH", UTC, "2022-Feb 2 1 06", 1644127200000),
    ("yyyy-MM-dd W HH", UTC, "2022-02-06 2 06", 1644127200000),
    ("yyyy-MM-dd W HH", UTC, "2022-02-06 1 06", None),
]


ADJACENT_VALUES = [  # Java's adjacent value parsing: fixed widths after a variable-width year
    ("yyyyMMddHHmmss", AMS, "20220206064312", 1644126192000),
    ("yyyyMMddHHmmss", AMS, "202202060643123", None),
    ("yyyyMMddHHmmssSSS", AMS, "20220206064312962", 1644126192962),
    ("yyyyMMddHHmmssSSS", AMS, "2022020606431296", None),
    ("yyMMddHHmm", UTC, "2202060643", 1644129780000),
    ("yMMddHHmm", UTC, "202202060643", 1644129780000),
]


@pytest.mark.parametrize(
    "vectors",
    [
        NANO_OF_SECOND,
        LITERALS_AND_OPTIONAL,
        OFFSETS_AND_ZONES,
        DEFAULT_ZONE_DST,
        NEW_LETTERS,
        WEEK_FIELDS,
        ADJACENT_VALUES,
    ],
    ids=[
        "nano-of-second",
        "literals-and-optional",
        "offsets-and-zones",
        "default-zone-dst",
        "new-letters",
        "week-fields",
        "adjacent-values",
    ],
)
def test_matches_java(spark, vectors):
    _check(spark, vectors)


def test_years_of_more_than_five_digits_give_null_in_every_engine(spark):
    """Years are read without a sign and with at most 5 significant digits (4 and 5 letters:
    exactly that many digits). Spark's timestamps end in year 294247: beyond it Spark's own
    parser raised an overflow that try_to_timestamp did not catch, failing the whole job."""
    _check(
        spark,
        [
            ("yyyy-MM-dd HH:mm:ss", UTC, "+294248-01-01 00:00:00", None),  # raised before
            ("yyyy-MM-dd HH:mm:ss", UTC, "+12345-06-01 00:00:00", None),
            ("yyyy-MM-dd HH:mm:ss", UTC, "-2024-01-01 00:00:00", None),
            ("yyyy-MM-dd HH:mm:ss", UTC, "2024-01-01 00:00:00", 1704067200000),
            ("yyyyy-MM-dd", UTC, "12345-06-01", 327416428800000),
            ("yyyyyy-MM-dd", UTC, "294248-01-01", None),  # raised before
            ("yyyyyy-MM-dd", UTC, "100000-01-01", None),
            ("yyyyyy-MM-dd", UTC, "099999-01-01", 3093496444800000),
            ("y-MM-dd", UTC, "300000-01-01", None),
            ("y-MM-dd", UTC, "99999-01-01", 3093496444800000),
            ("y-MM-dd", UTC, "0002024-01-01", 1704067200000),  # leading zeros, as Java
            ("yMMdd", UTC, "3000000101", None),
            ("yMMdd", UTC, "20240101", 1704067200000),
        ],
    )


def test_week_fields_around_new_year(spark):
    # Text formatted by Java (Locale.US) with "yyyy-MM-dd YYYY ww W e EEE QQQ g": every field
    # agrees with the date; changing any one of them must reject the row (as Java does).
    texts = [
        "2016-12-31 2016 53 5 7 Sat Q4 57753",
        "2017-01-01 2017 01 1 1 Sun Q1 57754",
        "2020-12-26 2020 52 4 7 Sat Q4 59209",
        "2020-12-27 2021 01 5 1 Sun Q4 59210",
        "2021-01-02 2021 01 1 7 Sat Q1 59216",
        "2021-01-03 2021 02 2 1 Sun Q1 59217",
        "2022-12-31 2022 53 5 7 Sat Q4 59944",
        "2026-12-31 2027 01 5 5 Thu Q4 61405",
    ]
    days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]

    def bump(text: str, k: int) -> str:  # change field k (1: YYYY ... 7: g) to a wrong value
        parts = text.split(" ")
        x = parts[k]
        parts[k] = (
            days[(days.index(x) + 1) % 7]
            if x in days
            else f"Q{int(x[1]) % 4 + 1}"
            if x.startswith("Q")
            else f"{int(x) + 1:0{len(x)}d}"
        )
        return " ".join(parts)

    pattern = "yyyy-MM-dd YYYY ww W e EEE QQQ g"
    wrong = [bump(t, k) for t in texts for k in range(1, 8)]
    got = _millis(spark, [(pattern, UTC, t) for t in texts + wrong])
    for t in texts:
        midnight = int(datetime.strptime(t[:10] + "+0000", "%Y-%m-%d%z").timestamp())
        assert got[(pattern, UTC, t)] == (midnight * 1000,) * 3, t
    # Each wrong text with what (parse_event_time, rewritten path, JVM function) gave.
    accepted = {t: got[(pattern, UTC, t)] for t in wrong if got[(pattern, UTC, t)] != (None,) * 3}
    assert not accepted, accepted
    # Week dates resolve to a day (Java: "YYYY ww e" of 2016-01-01 and 2027-12-31).
    got = _millis(spark, [("YYYY ww e", UTC, "2016 01 6"), ("YYYY ww e", UTC, "2028 01 6")])
    assert got[("YYYY ww e", UTC, "2016 01 6")][0] == 1451606400000
    assert got[("YYYY ww e", UTC, "2028 01 6")][0] == 1830211200000


def test_unparseable_values_give_null_without_raising(spark):
    # ANSI mode is on: nothing here may raise (casts, overflow, regex, separators in the text).
    patterns = [
        "yyyy-MM-dd HH:mm:ss",
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "yyyy-MM-dd HH.mm.ss.nnnnnn:Z",
        "yyyy-MM-dd N",
        "g HH:mm",
        "YYYY-'W'ww-e",
        "EEE, dd MMM yyyy HH:mm:ss Z",
        "yyyy-MM-dd ppH:mm",
        "yyyy-MM-dd'T'HH:mm[XXX]",
    ]
    values = [
        "",
        " ",
        "not a date",
        "2022-02-06 06:43:12\n",
        "2022-02-06 06:43:12 ",
        "99999999999999999999999 06:43",
        "2022-02-06 99999999999999999999",
        "9999999999999999999-W99-9",
        "2022-02-06 06.43.12.99999999999999999999:+0100",
        "2022-02-06 06:43:12\u0001UTC",
        "\u0001\u00022022-02-06 06:43:12",
        None,
    ]
    got = _millis(spark, [(p, AMS, v) for p in patterns for v in values], codegen=True)
    assert {k: v for k, v in got.items() if v != (None,) * 3} == {}


def test_strict_resolution_where_java_is_smart(spark):
    # Java's default SMART resolver gives 2022-02-28 (1646030592000) and the next midnight
    # (1644192000000); like Spark's own parser we reject impossible dates and times.
    got = _millis(
        spark,
        [
            ("yyyy-MM-dd HH:mm:ss", UTC, "2022-02-30 06:43:12"),
            ("yyyy-MM-dd HH:mm:ss", UTC, "2022-02-06 24:00:00"),
        ],
    )
    assert set(got.values()) == {(None,) * 3}
    # Missing fields default as in Spark (Java could not make an instant from these).
    got = _millis(spark, [("yyyy-MM", UTC, "2022-03"), ("HH:mm", AMS, "06:43")])
    assert got[("yyyy-MM", UTC, "2022-03")] == (1646092800000,) * 3
    assert got[("HH:mm", AMS, "06:43")] == (20580000,) * 3  # 1970-01-01, CET


def _parse(spark, values, pattern, zone):
    df = spark.createDataFrame([(v,) for v in values], "s string")
    ms = epoch_millis(parse_event_time(F.col("s"), pattern, zone))
    rows = df.select("s", ms.alias("ms"), utc_day(ms).cast("string").alias("day")).collect()
    return {r["s"]: (r["ms"], r["day"]) for r in rows}


def test_default_zone_applies_without_offset(spark):
    got = _parse(
        spark,
        ["2010-12-01 08:26:00", "2010-07-01 08:26:00", "not a date", None],
        "yyyy-MM-dd HH:mm:ss",
        "Europe/Amsterdam",
    )
    assert got["2010-12-01 08:26:00"] == (
        1291188360000,
        "2010-12-01",
    )  # CET, +01:00 (reference page)
    assert got["2010-07-01 08:26:00"][0] == 1277965560000  # CEST, +02:00
    assert got["not a date"] == (None, None)
    assert got[None] == (None, None)


def test_utc_day_across_midnight_depends_on_zone(spark):
    # 00:30 local in Amsterdam is still the previous UTC day; in UTC it is the same day.
    ams = _parse(spark, ["2022-02-07 00:30:00"], "yyyy-MM-dd HH:mm:ss", "Europe/Amsterdam")
    utc = _parse(spark, ["2022-02-07 00:30:00"], "yyyy-MM-dd HH:mm:ss", "UTC")
    assert ams["2022-02-07 00:30:00"] == (1644190200000, "2022-02-06")
    assert utc["2022-02-07 00:30:00"] == (1644193800000, "2022-02-07")
    # The same through the rewritten path (nano-of-second).
    ams = _parse(spark, ["2022-02-07 00.30.00.5"], "yyyy-MM-dd HH.mm.ss.n", "Europe/Amsterdam")
    assert ams["2022-02-07 00.30.00.5"] == (1644190200000, "2022-02-06")


def test_offset_in_text_wins_over_default_zone(spark):
    pattern = "yyyy-MM-dd'T'HH:mm:ss.SSSXXX"
    got = _parse(
        spark,
        ["2022-02-07T00:30:00.999+01:00", "2022-02-06T23:30:00.999Z", "2022-02-07T00:30:00.999"],
        pattern,
        "America/New_York",
    )
    assert got["2022-02-07T00:30:00.999+01:00"] == (1644190200999, "2022-02-06")
    assert got["2022-02-06T23:30:00.999Z"] == (1644190200999, "2022-02-06")
    assert got["2022-02-07T00:30:00.999"] == (None, None)  # the pattern demands an offset


def test_millis_are_truncated_not_rounded(spark):
    got = _parse(spark, ["2022-02-06 06.43.12.962083:+0100"], "yyyy-MM-dd HH.mm.ss.SSSSSS:Z", "UTC")
    assert got["2022-02-06 06.43.12.962083:+0100"][0] == 1644126192962
    # STRM's demo pattern: 'n' is nano-of-second, so 962083 ns is under a millisecond.
    got = _parse(spark, ["2022-02-06 06.43.12.962083:+0100"], "yyyy-MM-dd HH.mm.ss.nnnnnn:Z", "UTC")
    assert got["2022-02-06 06.43.12.962083:+0100"] == (1644126192000, "2022-02-06")


@pytest.mark.parametrize("session_zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_parsing_does_not_depend_on_session_time_zone(spark, session_zone):
    # One case per path: native, native with check, rewritten, optional offset (default zone),
    # week date, checked day of week (a second, date-only parse) and a DST gap.
    vectors = [
        ("yyyy-MM-dd HH:mm:ss", AMS, "2010-12-01 08:26:00", 1291188360000),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", NY, "2022-02-06T23:30:00.999Z", 1644190200999),
        ("yyyy-MM-dd HH.mm.ss.nnnnnn:Z", UTC, "2022-02-06 06.43.12.962083:+0100", 1644126192000),
        ("yyyy-MM-dd'T'HH:mm:ss[XXX][ VV]", AMS, "2022-10-30T02:30:00", 1667089800000),
        ("YYYY-'W'ww-e HH:mm", UTC, "2022-W01-1 06:43", 1640500980000),
        ("EEEE d MMMM yyyy HH:mm", AMS, "Sunday 6 February 2022 06:43", 1644126180000),
        ("yyyy-MM-dd HH.mm.ss.nnnnnn", AMS, "2022-03-27 02.30.00.000001", 1648344600000),
        ("yyyy-MM-dd e HH", UTC, "2022-02-06 2 06", None),
    ]
    before = spark.conf.get("spark.sql.session.timeZone")
    try:
        spark.conf.set("spark.sql.session.timeZone", session_zone)
        _check(spark, vectors, codegen=True)
    finally:
        spark.conf.set("spark.sql.session.timeZone", before)


def test_legacy_time_parser_policy_is_refused(spark):
    # LEGACY parses with SimpleDateFormat (no 'VV', other letters): every job would fail or
    # differ at run time, so building the column fails instead.
    key = "spark.sql.legacy.timeParserPolicy"
    before = spark.conf.get(key)
    try:
        spark.conf.set(key, "LEGACY")
        with pytest.raises(UnsupportedError, match="timeParserPolicy=LEGACY"):
            parse_event_time(F.col("s"), "yyyy-MM-dd HH:mm:ss", UTC)
    finally:
        spark.conf.set(key, before)


def test_zone_ids_match_case_insensitively_in_every_engine(spark):
    # Not Java (which gives null): Spark matches zone ids and names case-insensitively, and the
    # JVM function does the same, so the engines agree.
    got = _millis(
        spark,
        [
            ("yyyy-MM-dd HH:mm:ss VV", UTC, "2022-02-06 06:43:12 europe/amsterdam"),
            ("yyyy-MM-dd'T'HH:mm:ss[XXX][ VV]", AMS, "2022-10-30T02:30:00 asia/tokyo"),
        ],
    )
    assert set(got.values()) == {(1644126192000,) * 3, (1667064600000,) * 3}


def test_engine_choice(spark, monkeypatch):
    # Native patterns never use the JVM function; rewritten ones do when it can be registered.
    native, rewritten = "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH.mm.ss.nnnnnn:Z"
    assert parse.JVM_PARSER not in str(parse_event_time(F.col("s"), native, UTC, engine="jvm"))
    assert parse.JVM_PARSER in str(parse_event_time(F.col("s"), rewritten, UTC))
    expressions = parse_event_time(F.col("s"), rewritten, UTC, engine="expressions")
    assert parse.JVM_PARSER not in str(expressions)
    with pytest.raises(UnsupportedError, match="unknown engine"):
        parse_event_time(F.col("s"), rewritten, UTC, engine="python")
    # Without the class (no UDF jar: Spark Connect, Databricks serverless): the expressions.
    monkeypatch.setitem(
        jvm.TIMESTAMPS, parse.JVM_PARSER, ("io.strmspark.NoSuchClass", jvm.T.LongType())
    )
    assert parse.JVM_PARSER not in str(parse_event_time(F.col("s"), rewritten, UTC))
    with pytest.raises(UnsupportedError, match="not on the class path"):
        parse_event_time(F.col("s"), rewritten, UTC, engine="jvm")
