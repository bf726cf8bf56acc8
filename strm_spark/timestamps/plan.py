"""A checked pattern compiled once into a parsing plan: the native Spark pattern where every
letter means the same to Spark, else a Java-structure regex that splits the text into fields."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from strm_spark.timestamps.pattern import (
    _DOW_LETTERS,
    _NAMES,
    _OFFSET_LETTERS,
    _ZONE_ID_LETTERS,
    _ZONE_LETTERS,
    PatternError,
    PatternInfo,
    _Num,
    _number,
    _texts,
    _Token,
    _tokenize,
)

# Control characters used as field separators in rewritten text; one absent from the pattern.
_SEPARATORS = "\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u000e\u000f\u0010"


def _rx_escape(text: str) -> str:
    return "".join(ch if ch.isascii() and ch.isalnum() else f"\\x{{{ord(ch):x}}}" for ch in text)


def _rx_digits(lo: int, hi: int, possessive: bool = False) -> str:
    if lo == hi:
        return rf"\d{{{lo}}}"
    return rf"\d{{{lo},{hi}}}" + ("+" if possessive else "")


# Years of more than 5 digits are rejected on every path: Spark's timestamps end in year 294247,
# and its parser raises an overflow (uncaught by try_to_timestamp, failing the job) beyond.
_MAX_YEAR_DIGITS = 5


def _regex_num(tok: _Token) -> _Num | None:
    """`_number` for the regex: years capped at 5 significant digits (zeros may lead), as the
    JVM function does too. Other fields as Java reads them."""
    num = _number(tok.letter, tok.count)
    if num is None or tok.letter not in "yuY" or num.hi <= _MAX_YEAR_DIGITS:
        return num
    return _Num(num.lo, num.hi, num.exceeds_pad, num.chain, year=True)


def _rx_year(num: _Num, possessive: bool) -> str:
    """lo..hi digits of a year whose value has at most 5 digits."""
    if num.exceeds_pad:  # exactly lo digits (unsigned)
        return rf"0{{{num.lo - _MAX_YEAR_DIGITS}}}\d{{{_MAX_YEAR_DIGITS}}}"
    body = rf"0*\d{{{num.lo},{_MAX_YEAR_DIGITS}}}"
    return f"(?>{body})" if possessive else body


def _rx_zone(letter: str, count: int) -> str:
    if letter == "V":  # region id, or an offset-style id (Z, +01:00, UTC+1, GMT+01:00)
        return r"(?>[+-][0-9:]{1,8}+|[A-Za-z][A-Za-z0-9~/._+:-]*+)"
    if letter in "zv":  # zone names may have spaces ("Central European Standard Time")
        return r"(?:[+-][0-9:]{1,8}+|[A-Za-z]\S*(?: [^\s\d]\S*)*)"
    if letter == "O" or (letter == "Z" and count == 4):
        return r"GMT(?:[+-][0-9:]{1,8}+)?"
    if letter == "X" or (letter == "Z" and count == 5):
        return r"(?>Z|[+-][0-9:]{2,8}+)"
    return r"[+-][0-9:]{2,8}+"  # x, Z..ZZZ


def _rx_field(tok: _Token) -> str:
    """Regex of one field on its own (not in an adjacent-value chain)."""
    num = _regex_num(tok)
    if num is not None:
        if num.year:
            return _rx_year(num, possessive=True) + r"(?!\d)"
        if num.exceeds_pad:
            return _rx_digits(num.lo, num.lo) + r"(?!\d)"
        return _rx_digits(num.lo, num.hi, possessive=True)
    if tok.letter in _ZONE_LETTERS:
        return _rx_zone(tok.letter, tok.count)
    texts = sorted((t for t, _ in _texts(tok.letter, tok.count)), key=len, reverse=True)
    return "(?>" + "|".join(_rx_escape(t) for t in texts) + ")"


@dataclass(frozen=True)
class _Field:
    tok: _Token
    group: int  # capture group in the compiled regex
    optional: bool  # inside an optional section: may be absent (empty group)


def _chain_rx(chain: list[tuple[_Token, _Num, int]], greedy: bool) -> str:
    """Regex of adjacent numeric fields, as Java's adjacent value parsing reads them.

    The first field may be variable width; the fixed-width fields after it reserve their digits.
    When the chain is followed by another variable-width number, Java reads the first field
    greedily instead (`greedy`).
    """
    (_, head, _), rest = chain[0], chain[1:]

    def digits(possessive: bool) -> str:
        if head.year:
            return _rx_year(head, possessive)
        return _rx_digits(head.lo, head.lo if head.exceeds_pad else head.hi, possessive)

    if head.exceeds_pad:  # unsigned: exactly as many digits as letters
        out = "(" + digits(False) + ")"
        return out + "".join(f"(\\d{{{n.chain}}})" for _, n, _ in rest) + r"(?!\d)"
    if not rest:
        return "(" + digits(True) + ")"
    fixed_rest = "".join(f"(\\d{{{n.chain}}})" for _, n, _ in rest)
    if greedy or head.lo == head.hi:
        return "(" + digits(True) + ")" + fixed_rest
    return "(" + digits(False) + ")" + fixed_rest + r"(?!\d)"


def _compile(tokens: list[_Token], seps: str) -> tuple[str, tuple[_Field, ...]]:
    """A regex (find = full match) with one group per field, in field order."""
    parts: list[str] = []
    fields: list[_Field] = []
    chain: list[tuple[_Token, _Num, int]] = []

    def close_chain(greedy: bool) -> None:
        if chain:
            parts.append(_chain_rx(chain, greedy))
            chain.clear()

    for tok in tokens:
        if tok.kind != "field":
            close_chain(greedy=False)
            if tok.kind == "literal":
                parts.append(_rx_escape(tok.text))
            else:
                parts.append("(?:" if tok.kind == "open" else ")?+")  # Java: greedy, no backtrack
            continue
        group = len(fields) + 1
        fields.append(_Field(tok, group, tok.depth > 0))
        num = _regex_num(tok)
        if tok.pad:  # the padded region, checked again when the field is read
            close_chain(greedy=False)
            parts.append(f"([^{_rx_escape(seps)}]{{{tok.pad}}})")
        elif num is None:
            close_chain(greedy=False)
            parts.append("(" + _rx_field(tok) + ")")
        elif chain and num.chain is not None:
            chain.append((tok, num, group))
        else:
            close_chain(greedy=True)
            chain.append((tok, num, group))
    close_chain(greedy=False)
    return "^" + "".join(parts) + r"\z", tuple(fields)


@dataclass(frozen=True)
class _Plan:
    info: PatternInfo
    regex: str
    fields: tuple[_Field, ...]
    sep: str  # separates fields in rewritten text (a control character absent from the pattern)
    raw_sep: str  # separates the fields Spark reads as they are from those needing work
    spark_pattern: str | None  # native path: the Spark pattern (without the default zone)
    needs_check: bool  # native path: Spark is laxer than Java for this pattern
    zone_required: bool  # a zone or offset field outside optional sections
    date_source: str  # "standard", "mjd", "week-year", "week-month" or "none"


def _date_source(tokens: list[_Token]) -> str:
    """How a date is resolved (as java.time does), rejecting fields that can never resolve."""
    has = {t.letter for t in tokens if t.kind == "field"}
    year, month, dow = has & set("yu"), has & set("ML"), has & _DOW_LETTERS
    full = bool(year and (month and "d" in has or "D" in has))
    week_year = {"Y", "w"} <= has and bool(dow)
    week_month = bool(year and month and "W" in has and dow)
    source = (
        "standard"
        if full
        else "mjd"
        if "g" in has
        else "week-year"
        if week_year
        else "week-month"
        if week_month
        else "none"
    )
    if source == "none":
        quarter = (
            "can only be checked against a full date (year with month and day, or day of "
            "year); Java cannot resolve a date from a quarter"
        )
        needs = {
            "Y": "needs 'w' and a day of week ('e', 'c' or 'E') to give a date, or a full date to "
            "be checked against (did you mean year 'y'?)",
            "w": "needs 'Y' and a day of week ('e', 'c' or 'E') to give a date, or a full date to "
            "be checked against",
            "W": "needs year, month and a day of week ('e', 'c' or 'E') to give a date, or a full "
            "date to be checked against",
            "Q": quarter,
            "q": quarter,
            "E": "can only be checked against a full date (year with month and day, or day of "
            "year), or give one with 'Y' and 'w'",
        }
        for tok in tokens:
            if tok.kind == "field" and tok.letter in set(needs) | _DOW_LETTERS:
                raise PatternError(
                    f"{_NAMES[tok.letter]} {tok.letter!r} at position {tok.pos} "
                    + needs.get(tok.letter, needs["E"])
                )
    return source


def _spark_letters(tok: _Token) -> str:
    """Spark letters for a field Spark parses as Java does (renamed where only the name differs)."""
    if tok.letter == "u":
        return "y" * tok.count
    if tok.letter == "L":
        return "M" * tok.count
    if tok.letter == "v":
        return "z" if tok.count == 1 else "zzzz"
    if tok.letter == "G":
        return "G" * min(tok.count, 4)
    return tok.letter * tok.count


_NATIVE_LETTERS = set("GyuMLdDahKkHmsSVvzOXxZ")


def _native_pattern(tokens: list[_Token]) -> str | None:
    """The Spark pattern when Spark parses this Java pattern identically, else None."""
    fields = [t for t in tokens if t.kind == "field"]
    if any(t.letter not in _NATIVE_LETTERS or t.pad for t in fields):
        return None
    zones = [t for t in fields if t.letter in _ZONE_LETTERS]
    if any(t.depth for t in zones):  # needs the default zone when absent
        return None
    if {t.letter for t in zones} & _OFFSET_LETTERS and {t.letter for t in zones} & _ZONE_ID_LETTERS:
        return None  # Spark would let the zone id win; Java lets the offset win
    for i, tok in enumerate(tokens):
        if tok.kind == "literal" and "'" in tok.text:
            return None  # Spark mishandles quote literals at the end of a pattern
        if tok.kind == "field" and tok.letter == "S":  # Spark's fraction breaks adjacent parsing
            near = [tokens[j] for j in (i - 1, i + 1) if 0 <= j < len(tokens)]
            if any(t.kind == "field" and _number(t.letter, t.count) for t in near):
                return None
    out = []
    for tok in tokens:
        if tok.kind == "literal":
            out.append(f"'{tok.text}'")
        elif tok.kind == "field":
            out.append(_spark_letters(tok))
        else:
            out.append("[" if tok.kind == "open" else "]")
    return "".join(out)


def _needs_check(tokens: list[_Token]) -> bool:
    """Spark matches text and literals case-insensitively, reads 1..n digits for 'S', and
    years of any size (raising an overflow beyond its range instead of giving null)."""
    for tok in tokens:
        if tok.kind == "literal" and any(ch.lower() != ch.upper() for ch in tok.text):
            return True
        if tok.kind == "field" and (
            (tok.letter in "yu" and tok.count != 2)  # a year Spark would read beyond 5 digits
            or tok.letter == "S"
            or tok.letter in _ZONE_LETTERS
            or _number(tok.letter, tok.count) is None
        ):
            return True
    return False


@functools.lru_cache(maxsize=256)
def _plan(pattern: str) -> _Plan:
    if not pattern:
        raise PatternError("the pattern is empty")
    tokens = _tokenize(pattern)
    fields = [t for t in tokens if t.kind == "field"]
    if not fields:
        raise PatternError("the pattern has no date or time letters")
    has = {t.letter for t in fields}
    for tok in fields:
        if tok.letter == "A" and has & set("SnN"):
            raise PatternError(
                f"milli of day 'A' at position {tok.pos} cannot be combined with "
                "'S', 'n' or 'N' (Java checks only their milliseconds against it)"
            )
    source = _date_source(tokens)
    seps = [c for c in _SEPARATORS if c not in pattern]
    if len(seps) < 2:
        raise PatternError("the pattern uses the control characters reserved as separators")
    regex, compiled = _compile(tokens, seps[0] + seps[1])
    native = _native_pattern(tokens)
    zones = [t for t in fields if t.letter in _ZONE_LETTERS]
    return _Plan(
        info=PatternInfo(
            pattern, has_zone=bool(zones), native=native is not None, full_date=source != "none"
        ),
        regex=regex,
        fields=compiled,
        sep=seps[0],
        raw_sep=seps[1],
        spark_pattern=native,
        needs_check=_needs_check(tokens),
        zone_required=any(t.depth == 0 for t in zones),
        date_source=source,
    )


def check_pattern(pattern: str) -> PatternInfo:
    """Validate a Java DateTimeFormatter pattern; raises PatternError naming the letter and why."""
    return _plan(pattern).info
