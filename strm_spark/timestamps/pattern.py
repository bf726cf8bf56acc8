"""Java DateTimeFormatter patterns on the driver: the letters, their Java counts and texts, and
the tokenizer that rejects what Java rejects (a bad pattern is a config error)."""

from __future__ import annotations

from dataclasses import dataclass

from strm_spark.errors import PatternError

_JAVA_LETTERS = set("GuyDMLdQqYwWEecFaBhKkHmsSAnNgVvzOXxZp")


_ZONE_ID_LETTERS = set("Vzv")  # a region id or zone name


_OFFSET_LETTERS = set("XxZO")  # an offset from UTC


_ZONE_LETTERS = _ZONE_ID_LETTERS | _OFFSET_LETTERS


_DOW_LETTERS = set("Eec")


_NAMES = {
    "G": "era",
    "u": "year",
    "y": "year of era",
    "D": "day of year",
    "M": "month",
    "L": "month",
    "d": "day of month",
    "Q": "quarter",
    "q": "quarter",
    "Y": "week-based year",
    "w": "week of week-based year",
    "W": "week of month",
    "E": "day of week",
    "e": "localized day of week",
    "c": "localized day of week",
    "F": "aligned day/week of month",
    "a": "am/pm",
    "B": "period of day",
    "h": "clock hour of am/pm",
    "K": "hour of am/pm",
    "k": "clock hour of day",
    "H": "hour of day",
    "m": "minute",
    "s": "second",
    "S": "fraction of second",
    "A": "milli of day",
    "n": "nano of second",
    "N": "nano of day",
    "g": "modified Julian day",
    "V": "zone id",
    "v": "generic zone name",
    "z": "zone name",
    "O": "localized offset",
    "X": "offset (Z for zero)",
    "x": "offset",
    "Z": "offset",
}


# Letter counts Java accepts, where it restricts them.
_JAVA_COUNTS = {
    "G": range(1, 6),
    "M": range(1, 6),
    "L": range(1, 6),
    "Q": range(1, 6),
    "q": range(1, 6),
    "E": range(1, 6),
    "e": range(1, 6),
    "c": (1, 3, 4, 5),
    "a": (1,),
    "F": (1,),
    "d": (1, 2),
    "h": (1, 2),
    "H": (1, 2),
    "k": (1, 2),
    "K": (1, 2),
    "m": (1, 2),
    "s": (1, 2),
    "D": (1, 2, 3),
    "S": range(1, 10),
    "V": (2,),
    "v": (1, 4),
    "z": range(1, 5),
    "Z": range(1, 6),
    "O": (1, 4),
    "X": range(1, 6),
    "x": range(1, 6),
    "W": (1,),
    "w": (1, 2),
    "B": (1, 4, 5),
}


_UNSUPPORTED = {
    "B": "day periods ('in the morning', 'at night') resolve hours by locale-specific CLDR rules "
    "that Spark cannot reproduce",
    "F": "its meaning differs between Java releases (aligned day-of-week-in-month in Java 17, "
    "aligned week-of-month in newer releases), so what STRM computed is ambiguous",
}


_MAX_YEAR_LETTERS = 6  # Spark's limit: its timestamps end in year 294247


# Texts of java.time's Locale.US (the locale Spark parses with), as value -> text.
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")  # ISO 1-7


_QUARTERS = ("1st quarter", "2nd quarter", "3rd quarter", "4th quarter")


@dataclass(frozen=True)
class PatternInfo:
    pattern: str
    has_zone: bool  # the pattern has an offset or zone letter (possibly in an optional section)
    native: bool = False  # parsed by Spark directly; otherwise via the regex rewrite
    # Gives a whole date (year with month and day, day of year, week-based year with week and
    # day of week, or a modified Julian day); without one java.time falls back to 1970.
    full_date: bool = True


@dataclass(frozen=True)
class _Token:
    kind: str  # "literal", "field", "open" ('[') or "close" (']')
    text: str = ""  # literal text
    letter: str = ""
    count: int = 0
    pos: int = 0  # position of the letter in the pattern
    pad: int = 0  # width of a 'p' pad modifier in front of the field, 0 if none
    depth: int = 0  # nesting of optional sections


def _is_letter(ch: str) -> bool:
    return "A" <= ch <= "Z" or "a" <= ch <= "z"


def _run_length(pattern: str, i: int) -> int:
    j = i
    while j < len(pattern) and pattern[j] == pattern[i]:
        j += 1
    return j - i


def _check_letter(ch: str, count: int, pos: int) -> None:
    where = f"pattern letter {ch!r} ({_NAMES.get(ch, '?')}) at position {pos}"
    if ch not in _JAVA_LETTERS:
        raise PatternError(f"unknown pattern letter {ch!r} at position {pos}")
    if ch in _UNSUPPORTED:
        raise PatternError(f"{where} is not supported: {_UNSUPPORTED[ch]}")
    if ch == "V" and count != 2:
        raise PatternError(f"zone id 'V' at position {pos} must be written 'VV'")
    if ch in _JAVA_COUNTS and count not in _JAVA_COUNTS[ch]:
        allowed = ", ".join(str(c) for c in _JAVA_COUNTS[ch])
        raise PatternError(f"{where}: {count} letters are not valid in Java (allowed: {allowed})")
    if ch in "yuY" and count > _MAX_YEAR_LETTERS:
        raise PatternError(f"{where}: at most {_MAX_YEAR_LETTERS} letters are supported")
    if ch in "nNAg" and count > 19:
        raise PatternError(f"{where}: at most 19 letters are valid in Java")
    if count == 5 and ch in "GMLQqEec":
        raise PatternError(
            f"{where}: narrow text (5 letters) is not supported: it is ambiguous "
            "for parsing ('J' is January, June or July; 'T' Tuesday or Thursday)"
        )


def _tokenize(pattern: str) -> list[_Token]:
    """Split a Java pattern into literals, fields and optional-section brackets."""
    tokens: list[_Token] = []
    depth = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if _is_letter(ch):
            run = _run_length(pattern, i)
            pad = 0
            if ch == "p":
                pad, start = run, i
                i += run
                if i >= len(pattern) or not _is_letter(pattern[i]):
                    raise PatternError(
                        f"pad modifier 'p' at position {start} must be followed by a pattern letter"
                    )
                ch, run = pattern[i], _run_length(pattern, i)
            _check_letter(ch, run, i)
            tokens.append(_Token("field", letter=ch, count=run, pos=i, pad=pad, depth=depth))
            i += run
        elif ch == "'":
            j = i + 1
            while j < len(pattern):
                if pattern[j] == "'":
                    if j + 1 < len(pattern) and pattern[j + 1] == "'":
                        j += 2
                        continue
                    break
                j += 1
            if j >= len(pattern):
                raise PatternError(f"unterminated quoted literal starting at position {i}")
            text = pattern[i + 1 : j]
            tokens.append(_Token("literal", text="'" if not text else text.replace("''", "'")))
            i = j + 1
        elif ch == "[":
            depth += 1
            tokens.append(_Token("open", pos=i, depth=depth))
            i += 1
        elif ch == "]":
            if depth == 0:
                raise PatternError(f"']' at position {i} closes no optional section")
            tokens.append(_Token("close", pos=i, depth=depth))
            depth -= 1
            i += 1
        elif ch in "#{}":
            raise PatternError(f"{ch!r} at position {i} is reserved in Java patterns")
        else:
            tokens.append(_Token("literal", text=ch))
            i += 1
    # Java closes optional sections left open at the end.
    tokens.extend(_Token("close", pos=len(pattern), depth=d) for d in range(depth, 0, -1))
    merged: list[_Token] = []
    for tok in tokens:
        if tok.kind == "literal" and merged and merged[-1].kind == "literal":
            merged[-1] = _Token("literal", text=merged[-1].text + tok.text)
        else:
            merged.append(tok)
    return merged


@dataclass(frozen=True)
class _Num:
    """A numeric field as Java parses it: min..max digits; chain = width when fixed in a chain."""

    lo: int
    hi: int
    exceeds_pad: bool = False  # years of 4+ letters: more digits than letters need a '+' sign
    chain: int | None = None
    year: bool = False  # a year read as at most 5 significant digits (strm_spark.timestamps.plan)


def _number(letter: str, count: int) -> _Num | None:
    """Java's parser for a numeric field (DateTimeFormatterBuilder.parseField), or None if text."""
    if letter in "yuY":
        if count == 2:
            return _Num(2, 2, chain=2)
        return _Num(count, count, exceeds_pad=True) if count >= 4 else _Num(count, 19)
    if letter in "MLQq":
        return None if count >= 3 else (_Num(1, 19) if count == 1 else _Num(2, 2, chain=2))
    if letter in "dhHkKms":
        return _Num(1, 19) if count == 1 else _Num(2, 2, chain=2)
    if letter == "D":
        return _Num(1, 19) if count == 1 else _Num(count, 3, chain=3 if count == 3 else None)
    if letter == "S":
        return _Num(count, count, chain=count)
    if letter in "nNA":
        return _Num(count, 19, chain=19 if count == 19 else None)
    if letter == "g":
        return _Num(count, 19)
    if letter in "ec":  # localized day of week: exactly as many digits as letters (Java 17)
        return None if count >= 3 else _Num(count, count, chain=count)
    if letter == "w":
        return _Num(count, 2, chain=2 if count == 2 else None)
    if letter == "W":  # exactly one digit (Java 17)
        return _Num(1, 1, chain=1)
    return None


def _texts(letter: str, count: int) -> tuple[tuple[str, int], ...]:
    """(text, value) pairs a Java text field accepts in Locale.US."""
    if letter in "ML":
        names = _MONTHS if count == 4 else tuple(m[:3] for m in _MONTHS)
        return tuple((n, i + 1) for i, n in enumerate(names))
    if letter in "Eec":
        names = _DAYS if count == 4 else tuple(d[:3] for d in _DAYS)
        return tuple((n, i + 1) for i, n in enumerate(names))
    if letter in "Qq":
        names = _QUARTERS if count == 4 else ("Q1", "Q2", "Q3", "Q4")
        return tuple((n, i + 1) for i, n in enumerate(names))
    if letter == "a":
        return (("AM", 0), ("PM", 1))
    if letter == "G":
        return (("Before Christ", 0), ("Anno Domini", 1)) if count == 4 else (("BC", 0), ("AD", 1))
    raise AssertionError(letter)
