"""Deterministic generator of a fake webshop clickstream CSV.

The file is the demo data set of the privacy engine: it contains invented
personal data (customer ids, e-mail addresses, phone numbers, IP addresses)
next to ordinary click events, plus a small, exactly known number of
deliberately broken rows so that validation can be exercised.  Every value is
made up from a seeded :class:`random.Random`; no real person is described.

The same ``(rows, seed, invalid_fraction, start)`` always yields a
byte-identical file (for a given Python minor version), and rows are streamed
to disk in small batches so millions of rows need only bounded memory.
"""

from __future__ import annotations

import csv
import os
import random
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

COLUMNS: tuple[str, ...] = (
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


@dataclass(frozen=True)
class GenerateResult:
    """What :func:`generate` wrote: the file, its data rows and how many of them are invalid."""

    path: str
    rows: int
    invalid_rows: int


# --------------------------------------------------------------------------- #
# Fixed vocabularies (all invented / generic).
# --------------------------------------------------------------------------- #

FIRST_NAMES: Final[tuple[str, ...]] = (
    "anna",
    "bram",
    "cees",
    "daan",
    "emma",
    "fleur",
    "gijs",
    "hanna",
    "ilse",
    "joost",
    "julia",
    "kees",
    "lars",
    "lotte",
    "maud",
    "milan",
    "noor",
    "olaf",
    "pien",
    "quinten",
    "roos",
    "sanne",
    "thijs",
    "uma",
    "vera",
    "willem",
    "xander",
    "yara",
    "zoe",
    "lucas",
    "sophie",
    "finn",
    "tess",
    "sem",
    "liv",
    "jesse",
    "eva",
    "ruben",
    "isa",
    "timo",
)
LAST_NAMES: Final[tuple[str, ...]] = (
    "jansen",
    "devries",
    "bakker",
    "visser",
    "smit",
    "meijer",
    "mulder",
    "bos",
    "vos",
    "peters",
    "hendriks",
    "dekker",
    "brouwer",
    "dijkstra",
    "vermeulen",
    "kok",
    "jacobs",
    "vandam",
    "schouten",
    "willems",
    "hoekstra",
    "koster",
    "prins",
    "huisman",
    "kuipers",
    "postma",
    "kramer",
    "vanleeuwen",
    "blom",
    "maas",
)
EMAIL_TLDS: Final[tuple[str, ...]] = ("com", "org", "net")
#: Some contain commas, so the CSV writer has to quote them.
USER_AGENTS: Final[tuple[str, ...]] = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "WebshopApp/5.3.1 (Android 14; Pixel 8)",
    "WebshopApp/5.3.1 (iOS 18.0; iPhone15,2)",
)
SEARCH_TERMS: Final[tuple[str, ...]] = (
    "shoes",
    "jacket",
    "umbrella",
    "bicycle+lamp",
    "coffee",
    "teapot",
    "headphones",
    "backpack",
    "scarf",
    "gloves",
    "lego",
    "puzzle",
    "candles",
    "winter+coat",
    "socks",
    "keyboard",
    "mouse",
    "monitor",
    "desk+lamp",
    "water+bottle",
    "yoga+mat",
    "running+shoes",
    "bluetooth+speaker",
    "notebook",
)
#: Consent values of a session and their cumulative weights (percent).
CONSENT_VALUES: Final[tuple[str, ...]] = (
    "all",
    "analytics",
    "marketing",
    "none",
    "[0,1,2]",
    "1",
    "",
)
CONSENT_CUM_WEIGHTS: Final[tuple[int, ...]] = (30, 55, 65, 75, 85, 90, 100)

#: Event types and the cumulative probability thresholds used to draw them.
EVENT_TYPES: Final[tuple[str, ...]] = ("page_view", "search", "add_to_cart", "purchase")
_P_PAGE_VIEW: Final[float] = 0.62
_P_SEARCH: Final[float] = 0.82
_P_ADD_TO_CART: Final[float] = 0.94

#: Quantities 1..5, weighted toward 1 (index with int(random() * len)).
_QUANTITY_TABLE: Final[tuple[str, ...]] = ("1",) * 12 + ("2",) * 4 + ("3",) * 2 + ("4", "5")

ANONYMOUS_SESSION_SHARE: Final[float] = 0.20
UTC_ROW_SHARE: Final[float] = 0.10
MAX_SESSION_EVENTS: Final[int] = 30
PROTECTED_LEADING_ROWS: Final[int] = 5  #: the first rows are never made invalid
DAYS: Final[int] = 7
PRODUCT_COUNT: Final[int] = 2_000
MAX_CUSTOMERS: Final[int] = 1_000_000  #: caps the in-memory customer pool

LOCAL_OFFSET: Final[str] = "+01:00"
_DAY_MS: Final[int] = 86_400_000
_MINUTE_MS: Final[int] = 60_000
_OFFSET_MINUTES: Final[int] = 60  # +01:00
_MIN_GAP_MS: Final[int] = 2_000
_GAP_RANGE_MS: Final[int] = 298_000  # gaps are 2 s .. 300 s
_MAX_SESSION_SPAN_MS: Final[int] = (MAX_SESSION_EVENTS - 1) * (_MIN_GAP_MS + _GAP_RANGE_MS)
#: Session starts are spread over this span so the last event stays inside the 7 days.
_START_SPAN_MS: Final[int] = DAYS * _DAY_MS - _MAX_SESSION_SPAN_MS - 1_000

#: Invalid-row kinds, applied in this cyclic order.
INVALID_KINDS: Final[tuple[str, ...]] = (
    "email_without_at",
    "bad_event_time",
    "empty_event_type",
    "bad_quantity",
    "extra_column",
)
#: Unparseable event_time values, used in turn by the "bad_event_time" rows.
INVALID_EVENT_TIMES: Final[tuple[str, ...]] = (
    "2026-13-45 25:61",
    "not-a-timestamp",
    "2026-11-31T24:00:00.000+01:00",
)
INVALID_QUANTITY: Final[str] = "three"
EXTRA_COLUMN_VALUE: Final[str] = "unexpected_extra_field"

# Session ids are a bijection of the session counter on 40 bits, so they never collide.
_SESSION_MASK: Final[int] = (1 << 40) - 1
_SESSION_MULT: Final[int] = 0x9E3779B97F & _SESSION_MASK | 1

_BATCH_ROWS: Final[int] = 4_096


@dataclass(frozen=True, slots=True)
class _Customer:
    """One invented customer: id, e-mail, phone and home IP address."""

    customer_id: str
    email: str
    phone: str
    ip: str


def _make_customers(rng: random.Random, count: int) -> list[_Customer]:
    """Build a pool of ``count`` customers with unique ids, e-mails and phone numbers."""
    ids = rng.sample(range(10**7), count)
    phones = rng.sample(range(10**8), count)
    ips = rng.sample(range(1, (1 << 24) - 1), count)
    customers: list[_Customer] = []
    for i in range(count):
        first = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
        last = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        tld = EMAIL_TLDS[rng.randrange(len(EMAIL_TLDS))]
        ip = ips[i]
        customers.append(
            _Customer(
                customer_id=f"C{ids[i]:07d}",
                email=f"{first}.{last}{i + 1}@example.{tld}",  # the number makes e-mails unique
                phone=f"+31 6 {phones[i]:08d}",
                ip=f"10.{ip >> 16}.{(ip >> 8) & 255}.{ip & 255}",
            )
        )
    return customers


@dataclass(frozen=True, slots=True)
class _Product:
    """One catalogue entry; the URLs are precomputed because they are needed per event."""

    product_id: str
    price: str
    view_url: str
    cart_url: str


def _make_products(rng: random.Random) -> list[_Product]:
    """Build a fixed catalogue of products with ids ``P`` + 5 digits and prices like ``19.99``."""
    ids = rng.sample(range(10**5), PRODUCT_COUNT)
    cents = ("99", "95", "49", "00", "50")
    products: list[_Product] = []
    for pid in ids:
        product_id = f"P{pid:05d}"
        price = f"{rng.randrange(1, 250)}.{cents[rng.randrange(len(cents))]}"
        products.append(
            _Product(product_id, price, f"/products/{product_id}", f"/cart/add/{product_id}")
        )
    return products


def _time_tables(start_date: date) -> tuple[list[str], list[str]]:
    """Precompute string pieces so formatting a timestamp is two lookups and a concatenation.

    Returns (``yyyy-MM-ddTHH:mm:`` for every minute from one hour before ``start``
    00:00 to the end of the 7 days, ``ss.SSS`` for every millisecond of a minute).
    The clock of both tables is the naive wall clock: index 0 of the first table is
    ``start`` minus one day at 23:00.
    """
    minute_prefixes: list[str] = []
    for d in range(-1, DAYS + 1):
        day = f"{start_date + timedelta(days=d)}T"
        first_minute = 23 * 60 if d == -1 else 0
        minute_prefixes.extend(
            f"{day}{m // 60:02d}:{m % 60:02d}:" for m in range(first_minute, 1440)
        )
    second_millis = [f"{ms // 1000:02d}.{ms % 1000:03d}" for ms in range(_MINUTE_MS)]
    return minute_prefixes, second_millis


def _check_args(rows: int, invalid_fraction: float) -> int:
    """Validate arguments and return the exact number of invalid rows to write."""
    if isinstance(rows, bool) or not isinstance(rows, int):
        raise TypeError(f"rows must be an int, got {type(rows).__name__}")
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    if not (0.0 <= invalid_fraction <= 1.0):  # also rejects NaN
        raise ValueError(f"invalid_fraction must be within [0, 1], got {invalid_fraction}")
    n_invalid = round(rows * invalid_fraction)
    eligible = max(0, rows - PROTECTED_LEADING_ROWS)
    if n_invalid > eligible:
        raise ValueError(
            f"{n_invalid} invalid rows requested but only {eligible} rows are eligible "
            f"(the first {PROTECTED_LEADING_ROWS} rows are never made invalid)"
        )
    return n_invalid


def _make_invalid(row: list[str], kind: int, bad_time_no: int) -> None:
    """Break ``row`` in place the way ``INVALID_KINDS[kind]`` says."""
    if kind == 0:
        row[3] = row[3].replace("@", "(at)")
    elif kind == 1:
        row[12] = INVALID_EVENT_TIMES[bad_time_no % len(INVALID_EVENT_TIMES)]
    elif kind == 2:
        row[8] = ""
    elif kind == 3:
        row[11] = INVALID_QUANTITY
    else:
        row.append(EXTRA_COLUMN_VALUE)


def generate(
    out_path: str,
    rows: int = 100_000,
    seed: int = 42,
    invalid_fraction: float = 0.005,
    start: str = "2026-11-02",
) -> GenerateResult:
    """Write a fake clickstream CSV of ``rows`` data rows to ``out_path`` and describe it.

    Events cover 7 days from ``start`` 00:00 (+01:00).  Exactly
    ``round(rows * invalid_fraction)`` rows, never among the first 5, are made invalid,
    cycling through :data:`INVALID_KINDS`.  The file is written to a temporary
    name and renamed, so a reader never sees a half-written file.
    """
    n_invalid = _check_args(rows, invalid_fraction)
    start_date = date.fromisoformat(start)

    # Independent streams: changing invalid_fraction does not change the valid data.
    rng = random.Random(seed)
    inv_rng = random.Random(f"strm_spark.generate/invalid/{seed}")
    n_customers = min(max(50, rows // 40), MAX_CUSTOMERS)
    customers = _make_customers(random.Random(f"strm_spark.generate/customers/{seed}"), n_customers)
    products = _make_products(random.Random(f"strm_spark.generate/products/{seed}"))
    session_offset = random.Random(f"strm_spark.generate/sessions/{seed}").getrandbits(40)
    minute_prefixes, second_millis = _time_tables(start_date)

    parent = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(parent, exist_ok=True)
    tmp_path = f"{out_path}.tmp-{os.getpid()}"

    rnd = rng.random
    inv_rnd = inv_rng.random
    n_products = len(products)
    n_user_agents = len(USER_AGENTS)
    search_urls = [f"/search?q={term}" for term in SEARCH_TERMS]
    n_search = len(search_urls)
    n_qty = len(_QUANTITY_TABLE)
    n_kinds = len(INVALID_KINDS)

    invalid_left = n_invalid
    invalid_written = 0
    bad_times_written = 0
    kind_cursor = 0
    row_idx = 0
    session_no = 0
    batch: list[list[str]] = []

    try:
        with open(tmp_path, "w", encoding="utf-8", newline="", buffering=1 << 20) as fh:
            writer = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
            writer.writerow(COLUMNS)
            while row_idx < rows:
                # ---- one session: shared id, customer, ip, user agent, consent ----
                n_events = 1 + int((MAX_SESSION_EVENTS - 1) * rnd() ** 2)
                if n_events > rows - row_idx:
                    n_events = rows - row_idx
                session_id = "S%010x" % (
                    (session_no * _SESSION_MULT + session_offset) & _SESSION_MASK
                )
                session_no += 1
                anonymous = rnd() < ANONYMOUS_SESSION_SHARE
                if anonymous:
                    customer_id = email = phone = ""
                    bits = rng.getrandbits(24)
                    ip = f"10.{bits >> 16}.{(bits >> 8) & 255}.{bits & 255}"
                else:
                    cust = customers[rng.randrange(n_customers)]
                    customer_id, email = cust.customer_id, cust.email
                    phone, ip = cust.phone, cust.ip
                user_agent = USER_AGENTS[rng.randrange(n_user_agents)]
                consent = rng.choices(CONSENT_VALUES, cum_weights=CONSENT_CUM_WEIGHTS)[0]
                t = row_idx * _START_SPAN_MS // rows + int(rnd() * 1000)
                viewed: _Product | None = None
                in_cart: _Product | None = None

                for j in range(n_events):
                    if j:
                        r = rnd()
                        t += _MIN_GAP_MS + int(r * r * _GAP_RANGE_MS)
                    # ---- time: +01:00 local, or the same instant in UTC ('Z') ----
                    minute, ms_of_minute = divmod(t, _MINUTE_MS)
                    sec_ms = second_millis[ms_of_minute]
                    if rnd() < UTC_ROW_SHARE:  # same instant, one hour earlier on the UTC clock
                        event_time = minute_prefixes[minute] + sec_ms + "Z"
                    else:
                        event_time = (
                            minute_prefixes[minute + _OFFSET_MINUTES] + sec_ms + LOCAL_OFFSET
                        )
                    event_id = f"E{row_idx + 1:012d}"
                    # ---- event ----
                    r = rnd()
                    if r < _P_PAGE_VIEW:
                        viewed = products[int(rnd() * n_products)]
                        row = [
                            event_id,
                            session_id,
                            customer_id,
                            email,
                            phone,
                            ip,
                            user_agent,
                            viewed.view_url,
                            "page_view",
                            viewed.product_id,
                            "",
                            "",
                            event_time,
                            consent,
                        ]
                    elif r < _P_SEARCH:
                        row = [
                            event_id,
                            session_id,
                            customer_id,
                            email,
                            phone,
                            ip,
                            user_agent,
                            search_urls[int(rnd() * n_search)],
                            "search",
                            "",
                            "",
                            "",
                            event_time,
                            consent,
                        ]
                    elif r < _P_ADD_TO_CART:
                        in_cart = (
                            viewed if viewed is not None else products[int(rnd() * n_products)]
                        )
                        row = [
                            event_id,
                            session_id,
                            customer_id,
                            email,
                            phone,
                            ip,
                            user_agent,
                            in_cart.cart_url,
                            "add_to_cart",
                            in_cart.product_id,
                            in_cart.price,
                            _QUANTITY_TABLE[int(rnd() * n_qty)],
                            event_time,
                            consent,
                        ]
                    else:
                        bought = (
                            in_cart
                            if in_cart is not None
                            else (
                                viewed if viewed is not None else products[int(rnd() * n_products)]
                            )
                        )
                        row = [
                            event_id,
                            session_id,
                            customer_id,
                            email,
                            phone,
                            ip,
                            user_agent,
                            "/checkout/confirmation",
                            "purchase",
                            bought.product_id,
                            bought.price,
                            _QUANTITY_TABLE[int(rnd() * n_qty)],
                            event_time,
                            consent,
                        ]

                    # ---- selection sampling: exactly n_invalid rows, spread uniformly ----
                    if invalid_left and row_idx >= PROTECTED_LEADING_ROWS:
                        if inv_rnd() * (rows - row_idx) < invalid_left:
                            kind = kind_cursor % n_kinds
                            if kind == 0 and anonymous:
                                kind = 1  # no e-mail to break: use the next kind
                            kind_cursor = kind + 1
                            _make_invalid(row, kind, bad_times_written)
                            if kind == 1:
                                bad_times_written += 1
                            invalid_left -= 1
                            invalid_written += 1

                    batch.append(row)
                    row_idx += 1
                if len(batch) >= _BATCH_ROWS:
                    writer.writerows(batch)
                    batch.clear()
            if batch:
                writer.writerows(batch)
        os.replace(tmp_path, out_path)
    except BaseException:
        try:
            os.remove(tmp_path)
        except OSError:
            pass
        raise

    return GenerateResult(path=out_path, rows=rows, invalid_rows=invalid_written)


def main(argv: list[str] | None = None) -> int:
    """`python -m demo.generate --out FILE [--rows N] [--seed S]`: write the demo CSV."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m demo.generate", description="write the synthetic webshop clickstream CSV"
    )
    parser.add_argument("--out", required=True, help="CSV file to write")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--invalid-fraction", type=float, default=0.005)
    args = parser.parse_args(argv)
    try:
        result = generate(
            args.out, rows=args.rows, seed=args.seed, invalid_fraction=args.invalid_fraction
        )
    except ValueError as exc:
        print(f"python -m demo.generate: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {result.rows:,} rows ({result.invalid_rows:,} deliberately invalid) to {result.path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
