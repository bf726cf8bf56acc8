"""Java patterns checked on the driver: which are supported, natively or rewritten, and the
errors of bad ones. No Spark."""

from __future__ import annotations

import pytest

from strm_spark.errors import PatternError
from strm_spark.timestamps.plan import check_pattern


@pytest.mark.parametrize(
    ("pattern", "has_zone", "native"),
    [
        ("yyyy-MM-dd HH:mm:ss", False, True),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", True, True),
        ("dd/MM/yyyy HH:mm Z", True, True),
        ("yyyy-MM-dd HH:mm:ss VV", True, True),
        ("yyyy-MM-dd['T'HH:mm]", False, True),
        ("uuuu-MM-dd HH:mm vvvv", True, True),  # renamed for Spark: u -> y, v -> z
        ("yyyy-MM-dd 'o''clock' HH", False, False),  # Spark drops a quote ending a pattern
        ("yyyy-MM-dd HH.mm.ss.nnnnnn:Z", True, False),
        ("yyyyMMddHHmmssSSS", False, False),  # Spark cannot read a fraction adjacent to digits
        ("yyyy-MM-dd'T'HH:mm:ss[XXX]", True, False),  # default zone when the offset is absent
        ("yyyy-MM-dd'T'HH:mm:ssXXX'['VV']'", True, False),  # Java lets the offset win
        ("EEE, dd MMM yyyy HH:mm:ss Z", True, False),
        ("YYYY-'W'ww-e", False, False),
        ("yyyy-MM-dd[ HH", False, True),  # Java closes an open optional section at the end
    ],
)
def test_supported_patterns(pattern, has_zone, native):
    info = check_pattern(pattern)
    assert (info.has_zone, info.native) == (has_zone, native)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("", "empty"),
        ("yyyy-MM-dd 'T", "unterminated quoted literal starting at position 11"),
        ("yyyy-MM-dd bb", "unknown pattern letter 'b' at position 11"),
        ("yyyy-MM-dd #", "reserved"),
        ("yyyy-MM-dd ]", "closes no optional section"),
        ("yyyy-MM-dd V", "'VV'"),
        ("'just text'", "no date or time letters"),
        ("yyyy-MM-dd ddd", "'d' .* 3 letters are not valid in Java"),
        ("yyyy-MM-dd SSSSSSSSSS", "'S' .* 10 letters"),
        ("yyyyyyy", "at most 6 letters"),
        # Letters Java has but that are not supported, each with the reason.
        ("yyyy-MM-dd h B", "'B' .* not supported: day periods"),
        ("yyyy-MM-dd F", "'F' .* not supported: its meaning differs between Java releases"),
        ("yyyy-MMMMM-dd", "'M' .* narrow text .* ambiguous"),
        ("yyyy-MM-dd EEEEE", "'E' .* narrow text"),
        ("yyyy-MM-dd ppp", "pad modifier 'p' at position 11 must be followed by a pattern letter"),
        ("yyyy-MM-dd HH A SSS", "'A' at position 14 cannot be combined with 'S', 'n' or 'N'"),
        # Fields java.time can never resolve into a date: a config error, not null for every row.
        (
            "YYYY-MM-dd",
            "week-based year 'Y' at position 0 needs 'w' and a day of week .*did you mean year 'y'",
        ),
        ("YYYY-ww", "week-based year 'Y' .* needs 'w' and a day of week"),
        ("yyyy-ww-e", "'w' at position 5 needs 'Y' and a day of week"),
        ("yyyy-MM W", "'W' at position 8 needs year, month and a day of week"),
        ("yyyy-MM EEE", "day of week 'E' at position 8 can only be checked against a full date"),
        ("yyyy QQQ", "quarter 'Q' at position 5 can only be checked against a full date"),
    ],
)
def test_bad_patterns(pattern, message):
    with pytest.raises(PatternError, match=message):
        check_pattern(pattern)
