"""Tests of the fake clickstream generator (pure Python, no Spark)."""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from demo.generate import COLUMNS, GenerateResult, generate

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f%z"
EMAIL_RE = re.compile(r"^[a-z]+\.[a-z]+[0-9]+@example\.(com|org|net)$")
CUSTOMER_RE = re.compile(r"^C[0-9]{7}$")
PHONE_RE = re.compile(r"^\+31 6 [0-9]{8}$")
IP_RE = re.compile(r"^10\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$")
SESSION_RE = re.compile(r"^S[0-9a-f]{10}$")
EVENT_ID_RE = re.compile(r"^E[0-9]{12}$")
PRODUCT_RE = re.compile(r"^P[0-9]{5}$")
PRICE_RE = re.compile(r"^[0-9]+\.[0-9]{2}$")
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|\+01:00)$")
CONSENTS = {"all", "analytics", "marketing", "none", "[0,1,2]", "1", ""}
EVENT_TYPES = {"page_view", "search", "add_to_cart", "purchase"}
KINDS = ("email_without_at", "bad_event_time", "empty_event_type", "bad_quantity", "extra_column")

BIG_ROWS = 20_000
Big = tuple[GenerateResult, list[list[str]]]


def read_rows(path: str | Path) -> tuple[list[str], list[list[str]]]:
    """Return (header, data rows) of a generated CSV."""
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, list(reader)


def parse_time(value: str) -> datetime | None:
    """Parse an event_time the way the tests demand, or None if it does not parse."""
    try:
        return datetime.strptime(value, TIME_FORMAT)
    except ValueError:
        return None


def invalid_kind(row: list[str]) -> str | None:
    """Classify a data row as one of the deliberate invalid kinds, or None if it is valid."""
    if len(row) == len(COLUMNS) + 1:
        return "extra_column"
    assert len(row) == len(COLUMNS), row
    if row[8] == "":
        return "empty_event_type"
    if row[11] == "three":
        return "bad_quantity"
    if parse_time(row[12]) is None:
        return "bad_event_time"
    if row[3] != "" and "@" not in row[3]:
        return "email_without_at"
    return None


def sessions_of(rows: list[list[str]]) -> list[list[list[str]]]:
    """Split rows into runs of consecutive rows with the same session_id."""
    runs: list[list[list[str]]] = []
    for row in rows:
        if runs and runs[-1][0][1] == row[1]:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[GenerateResult, list[list[str]]]:
    """One 20k-row file with the default seed and invalid fraction."""
    out = tmp_path_factory.mktemp("gen") / "clicks.csv"
    result = generate(str(out), rows=BIG_ROWS)
    _, rows = read_rows(out)
    return result, rows


def test_same_arguments_give_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    generate(str(a), rows=3_000, seed=7)
    generate(str(b), rows=3_000, seed=7)
    generate(str(c), rows=3_000, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert len(a.read_bytes()) > 100_000


def test_other_start_or_fraction_changes_the_file(tmp_path: Path) -> None:
    base, later, dirtier = tmp_path / "base.csv", tmp_path / "later.csv", tmp_path / "dirty.csv"
    generate(str(base), rows=2_000)
    generate(str(later), rows=2_000, start="2026-12-01")
    generate(str(dirtier), rows=2_000, invalid_fraction=0.05)
    assert base.read_bytes() != later.read_bytes()
    assert base.read_bytes() != dirtier.read_bytes()
    _, rows = read_rows(later)
    first = parse_time(rows[0][12])
    assert first is not None and first.astimezone(UTC).date().isoformat() >= "2026-11-30"


def test_header_line_endings_and_column_count(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dir" / "clicks.csv"  # parent directories are created
    result = generate(str(out), rows=500, invalid_fraction=0.0)
    assert result == GenerateResult(path=str(out), rows=500, invalid_rows=0)
    raw = out.read_bytes()
    assert b"\r" not in raw
    first_line = raw.split(b"\n", 1)[0].decode("utf-8")
    assert first_line == ",".join(COLUMNS)
    assert COLUMNS == (
        "event_id",
        "session_id",
        "customer_id",
        "email",
        "phone",
        "ip_address",
        "user_agent",
        "url",
        "event_type",
        "product_id",
        "price",
        "quantity",
        "event_time",
        "consent",
    )
    header, rows = read_rows(out)
    assert header == list(COLUMNS)
    assert len(rows) == 500
    assert all(len(row) == 14 for row in rows)
    assert raw.endswith(b"\n")
    assert [p.name for p in out.parent.iterdir()] == ["clicks.csv"]  # no temporary file left


@pytest.mark.parametrize(
    ("rows", "fraction", "expected_invalid"),
    [
        (0, 0.005, 0),
        (1, 0.0, 0),
        (1_234, 0.01, 12),
        (999, 0.0125, 12),  # 12.4875 rounds to 12
        (2_000, 0.0, 0),
        (200, 0.5, 100),
    ],
)
def test_exact_row_and_invalid_counts(
    tmp_path: Path, rows: int, fraction: float, expected_invalid: int
) -> None:
    out = tmp_path / "clicks.csv"
    result = generate(str(out), rows=rows, invalid_fraction=fraction)
    assert result.rows == rows
    assert result.invalid_rows == expected_invalid == round(rows * fraction)
    _, data = read_rows(out)
    assert len(data) == rows
    kinds = [invalid_kind(row) for row in data]
    assert sum(kind is not None for kind in kinds) == expected_invalid
    assert all(kind is None for kind in kinds[:5])


def test_big_file_counts(big: Big) -> None:
    result, rows = big
    assert result.rows == BIG_ROWS == len(rows)
    assert result.invalid_rows == round(BIG_ROWS * 0.005) == 100
    kinds = [invalid_kind(row) for row in rows]
    assert sum(kind is not None for kind in kinds) == 100
    positions = [i for i, kind in enumerate(kinds) if kind is not None]
    assert min(positions) >= 5
    # Spread over the file, not bunched at one end.
    assert sum(p < BIG_ROWS // 2 for p in positions) in range(30, 71)


def test_every_invalid_kind_occurs_in_cyclic_order(big: Big) -> None:
    _, rows = big
    sequence = [kind for kind in (invalid_kind(row) for row in rows) if kind is not None]
    counts = Counter(sequence)
    assert set(counts) == set(KINDS)
    for prev, cur in zip(sequence, sequence[1:]):
        step = (KINDS.index(cur) - KINDS.index(prev)) % len(KINDS)
        # Normally the next kind; "email_without_at" is skipped for anonymous sessions.
        assert step == 1 or (step == 2 and KINDS[(KINDS.index(prev) + 1) % 5] == "email_without_at")
    for row in rows:
        kind = invalid_kind(row)
        if kind == "email_without_at":
            assert row[2] != "" and "example." in row[3]
        if kind == "extra_column":
            assert row[-1] != "" and len(row) == 15


def test_anonymous_session_share(big: Big) -> None:
    _, rows = big
    sessions = sessions_of(rows)
    anonymous = [s for s in sessions if s[0][2] == ""]
    share = len(anonymous) / len(sessions)
    assert 0.15 <= share <= 0.25, share
    for session in anonymous:
        for row in session:
            assert row[2] == row[3] == row[4] == ""
            assert IP_RE.match(row[5])


def test_sessions_are_consistent(big: Big) -> None:
    _, rows = big
    sessions = sessions_of(rows)
    ids = [s[0][1] for s in sessions]
    assert len(set(ids)) == len(ids)  # each session is one contiguous block
    assert all(1 <= len(s) <= 30 for s in sessions)
    assert max(len(s) for s in sessions) >= 25
    for session in sessions:
        first = session[0]
        for row in session:
            # customer, phone, ip, user agent and consent are per session (email may be broken)
            assert (row[1], row[2], row[4], row[5], row[6], row[13]) == (
                first[1],
                first[2],
                first[4],
                first[5],
                first[6],
                first[13],
            )
        parsed = [parse_time(row[12]) for row in session]
        times = [t for t in parsed if t is not None]
        assert times == sorted(times)
        gaps = [
            (b - a).total_seconds()
            for a, b in zip(parsed, parsed[1:])
            if a is not None and b is not None
        ]
        assert all(2.0 <= gap <= 300.0 for gap in gaps), gaps
    customers = {s[0][2] for s in sessions if s[0][2]}
    assert 50 <= len(customers) <= BIG_ROWS // 40


def test_valid_rows_have_well_formed_fields(big: Big) -> None:
    _, rows = big
    for number, row in enumerate(rows, start=1):
        assert row[0] == f"E{number:012d}"
        assert EVENT_ID_RE.match(row[0]) and SESSION_RE.match(row[1])
        if invalid_kind(row) is not None:
            continue
        (
            _,
            _,
            customer_id,
            email,
            phone,
            ip,
            agent,
            url,
            event_type,
            product_id,
            price,
            quantity,
            event_time,
            consent,
        ) = row
        if customer_id:
            assert CUSTOMER_RE.match(customer_id), customer_id
            assert EMAIL_RE.match(email), email
            assert PHONE_RE.match(phone), phone
        ip_match = IP_RE.match(ip)
        assert ip_match and all(0 <= int(part) <= 255 for part in ip_match.groups())
        assert agent
        assert event_type in EVENT_TYPES
        assert TIME_RE.match(event_time)
        assert consent in CONSENTS
        if event_type == "search":
            assert url.startswith("/search?q=") and product_id == price == quantity == ""
        else:
            assert PRODUCT_RE.match(product_id)
        if event_type == "page_view":
            assert url == f"/products/{product_id}" and price == quantity == ""
        if event_type in ("add_to_cart", "purchase"):
            assert PRICE_RE.match(price) and quantity in {"1", "2", "3", "4", "5"}


def test_distributions_are_roughly_right(big: Big) -> None:
    _, rows = big
    sessions = sessions_of(rows)
    consent = Counter(s[0][13] for s in sessions)
    n = len(sessions)
    expected = {
        "all": 0.30,
        "analytics": 0.25,
        "marketing": 0.10,
        "none": 0.10,
        "[0,1,2]": 0.10,
        "1": 0.05,
        "": 0.10,
    }
    for value, share in expected.items():
        assert abs(consent[value] / n - share) < 0.05, (value, consent[value] / n)
    types = Counter(row[8] for row in rows if invalid_kind(row) is None)
    assert types.most_common(1)[0][0] == "page_view"
    assert set(types) == EVENT_TYPES
    utc_share = sum(row[12].endswith("Z") for row in rows) / len(rows)
    assert 0.07 <= utc_share <= 0.13, utc_share
    assert len({row[6] for row in rows}) >= 3


def test_event_times_parse_and_cover_seven_days(big: Big) -> None:
    _, rows = big
    instants: list[datetime] = []
    for row in rows:
        if invalid_kind(row) is None:
            parsed = parse_time(row[12])
            assert parsed is not None and parsed.utcoffset() is not None
            if row[12].endswith("Z"):
                assert parsed.utcoffset().total_seconds() == 0
            else:
                assert parsed.utcoffset().total_seconds() == 3600
            instants.append(parsed)
    lo = datetime(2026, 11, 1, 23, 0, tzinfo=UTC)  # 2026-11-02T00:00+01:00
    hi = datetime(2026, 11, 8, 23, 0, tzinfo=UTC)  # 7 days later
    assert all(lo <= t < hi for t in instants)
    assert min(instants) - lo < (hi - lo) / 100
    assert hi - max(instants) < (hi - lo) / 10
    # Roughly increasing: the file's first tenth precedes its last tenth.
    tenth = len(instants) // 10
    assert max(instants[:tenth]) < min(instants[-tenth:])
    days = {t.astimezone(UTC).date() for t in instants}
    assert len(days) == 8


def test_a_session_crosses_utc_midnight(big: Big) -> None:
    _, rows = big
    crossing = 0
    for session in sessions_of(rows):
        dates = {
            t.astimezone(UTC).date()
            for t in (parse_time(row[12]) for row in session)
            if t is not None
        }
        crossing += len(dates) > 1
    assert crossing >= 1


def test_invalid_fraction_does_not_change_valid_rows(tmp_path: Path) -> None:
    clean, dirty = tmp_path / "clean.csv", tmp_path / "dirty.csv"
    generate(str(clean), rows=3_000, invalid_fraction=0.0)
    result = generate(str(dirty), rows=3_000, invalid_fraction=0.02)
    _, clean_rows = read_rows(clean)
    _, dirty_rows = read_rows(dirty)
    differing = [i for i, (a, b) in enumerate(zip(clean_rows, dirty_rows)) if a != b]
    assert len(differing) == result.invalid_rows == 60
    assert all(invalid_kind(dirty_rows[i]) is not None for i in differing)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rows": -1},
        {"invalid_fraction": -0.01},
        {"invalid_fraction": 1.01},
        {"invalid_fraction": math.nan},
        {"rows": 10, "invalid_fraction": 1.0},  # only rows 6..10 may be invalid
        {"start": "2026-13-01"},
    ],
)
def test_bad_arguments_raise_value_error(tmp_path: Path, kwargs: dict[str, object]) -> None:
    out = tmp_path / "clicks.csv"
    with pytest.raises(ValueError):
        generate(str(out), **kwargs)  # type: ignore[arg-type]
    assert not out.exists()
