"""Experiment (issue #17): event timestamps parsed by Spark SQL expressions against a Java UDF.

strm_spark.timestamps parses Java DateTimeFormatter patterns with Spark SQL expressions: the
native path (`try_to_timestamp` with the pattern itself) and the rewritten path (a regex splits
the text into fields, converted and parsed with a canonical Spark pattern). The alternative is
a JVM function on java.time's DateTimeFormatter, `io.strmspark.StrmParseTimestamp` in the UDF
jar (`make udf`). For each pattern below, on generated text (a share of it damaged, so most of
that is invalid) cached in memory, in one session and alternating, `--repeats` times:

* floor: `sum(length(text))`, the scan of the cached text alone;
* expressions: `sum(epoch_millis(parse_event_time(text, pattern, zone, engine="expressions")))`;
* udf: `sum(strm_parse_timestamp_jvm(text, pattern, zone))`.

Then the rows where the two give different values (null included), with examples. Medians and
the ratio udf / expressions, gross and net of the floor. Results: out/bench/timestamps.json.

    python bench/timestamps.py                              # 1,000,000 rows per pattern
    python bench/timestamps.py --rows 200000 --repeats 2 --patterns strm-demo,week-date
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUT = REPO / "out" / "bench"

_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_OFFSETS = [0, 3600, -5 * 3600, 5 * 3600 + 1800, -(9 * 3600 + 1800)]


def _xxx(secs: int) -> str:  # XXX: Z, +01:00
    if secs == 0:
        return "Z"
    sign, secs = ("+", secs) if secs > 0 else ("-", -secs)
    return f"{sign}{secs // 3600:02d}:{secs % 3600 // 60:02d}"


def _z(secs: int) -> str:  # Z: +0100
    sign, secs = ("+", secs) if secs >= 0 else ("-", -secs)
    return f"{sign}{secs // 3600:02d}{secs % 3600 // 60:02d}"


def _us_week(d: datetime) -> tuple[int, int, int]:
    """Locale.US week fields (Sunday first, week 1 holds 1 January): Y, w, e."""
    e = d.isoweekday() % 7 + 1  # Sunday 1 ... Saturday 7
    sunday = (d - timedelta(days=e - 1)).date()
    year = (sunday + timedelta(days=6)).year  # the week holding 1 January is week 1
    jan1 = datetime(year, 1, 1).date()
    first = jan1 - timedelta(days=jan1.isoweekday() % 7)
    return year, (sunday - first).days // 7 + 1, e


# name -> (pattern, default zone, path, text of (local time, nanos, offset seconds))
PATTERNS = {
    "iso-offset": (
        "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
        "America/New_York",
        "native, regex check",
        lambda t, n, o: f"{t:%Y-%m-%dT%H:%M:%S}.{n // 1_000_000:03d}{_xxx(o)}",
    ),
    "strm-uci": (  # STRM's blog post job (UCI Online Retail)
        "yyyy-MM-dd HH:mm:ss",
        "Europe/Amsterdam",
        "native, regex check",  # the year (at most 4 digits, no sign)
        lambda t, n, o: f"{t:%Y-%m-%d %H:%M:%S}",
    ),
    "strm-demo": (  # STRM's batch demo notebook: n is nano-of-second, at least 6 digits
        "yyyy-MM-dd HH.mm.ss.nnnnnn:Z",
        "UTC",
        "rewritten",
        lambda t, n, o: f"{t:%Y-%m-%d %H.%M.%S}.{n:06d}:{_z(o)}",
    ),
    "compact-millis": (
        "yyyyMMddHHmmssSSS",
        "Europe/Amsterdam",
        "rewritten",
        lambda t, n, o: f"{t:%Y%m%d%H%M%S}{n // 1_000_000:03d}",
    ),
    "week-date": (
        "YYYY-'W'ww-e HH:mm",
        "UTC",
        "rewritten",
        lambda t, n, o: "{}-W{:02d}-{} {:%H:%M}".format(*_us_week(t), t),
    ),
    "rfc-1123": (
        "EEE, dd MMM yyyy HH:mm:ss Z",
        "UTC",
        "rewritten",
        lambda t, n, o: (
            f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t:%Y %H:%M:%S} {_z(o)}"
        ),
    ),
}


def _damage(text: str, rng: random.Random) -> str:
    """A damaged copy: most are invalid, some still valid with another value."""
    kind = rng.randrange(5)
    i = rng.randrange(len(text))
    if kind == 0:  # one character replaced
        return text[:i] + rng.choice("0123456789:-.+ TWZaz") + text[i + 1 :]
    if kind == 1:  # truncated
        return text[:i]
    if kind == 2:  # a character added
        return text[:i] + rng.choice("0123456789 ") + text[i:]
    if kind == 3:  # letters in the other case
        return text.swapcase()
    return rng.choice(["", " ", "not a date", text + " ", "\u0001" + text])


def generate(name: str, rows: int, bad: float, seed: int) -> Path:
    """One text per line (instants from 2000 to 2030, random nanos and offsets), cached."""
    path = OUT / "timestamps" / f"{name}_{rows}_{bad}_{seed}.txt"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = PATTERNS[name][3]
    rng = random.Random(f"{name}:{seed}")
    epoch = datetime(1970, 1, 1)
    start = int((datetime(2000, 1, 1) - epoch).total_seconds())
    span = int((datetime(2030, 1, 1) - epoch).total_seconds()) - start
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for _ in range(rows):
            offset = rng.choice(_OFFSETS)
            local = epoch + timedelta(seconds=start + rng.randrange(span) + offset)
            text = fmt(local, rng.randrange(1_000_000_000), offset)
            out.write((_damage(text, rng) if rng.random() < bad else text) + "\n")
    tmp.replace(path)  # never a partial file under the cached name
    return path


def _timed(frame) -> float:
    start = time.perf_counter()
    frame.collect()
    return time.perf_counter() - start


def bench(spark, name: str, rows: int, bad: float, seed: int, repeats: int) -> dict:
    from pyspark.sql import functions as F

    from strm_spark.timestamps.parse import JVM_PARSER, epoch_millis, parse_event_time
    from strm_spark.timestamps.plan import check_pattern

    pattern, zone, path_kind, _ = PATTERNS[name]
    assert check_pattern(pattern).native == path_kind.startswith("native"), name
    src = generate(name, rows, bad, seed)
    df = spark.read.text(str(src)).repartition(4).cache()
    assert df.count() == rows
    text = F.col("value")
    expr = epoch_millis(parse_event_time(text, pattern, zone, engine="expressions"))
    udf = F.call_function(JVM_PARSER, text, F.lit(pattern), F.lit(zone))
    # A new DataFrame per run: collecting the same one again would reuse its finished shuffle
    # stage (adaptive execution) and time only the final aggregation.
    frames = {
        "floor": lambda: df.select(F.sum(F.length(text))),
        "expressions": lambda: df.select(F.sum(expr)),
        "udf": lambda: df.select(F.sum(udf)),
    }
    for frame in frames.values():  # warm: code generation, the JIT, the formatter cache
        _timed(frame())
    times: dict[str, list[float]] = {k: [] for k in frames}
    for r in range(repeats):
        order = list(frames) if r % 2 == 0 else list(reversed(frames))
        for k in order:
            times[k].append(_timed(frames[k]()))

    differ = ~expr.eqNullSafe(udf)
    counts = df.select(
        F.count_if(differ).alias("differ"),
        F.count_if(expr.isNull()).alias("expr_null"),
        F.count_if(udf.isNull()).alias("udf_null"),
    ).first()
    examples = [
        {"text": r[0], "expressions": r[1], "udf": r[2]}
        for r in df.where(differ).select(text, expr, udf).limit(8).collect()
    ]
    df.unpersist()
    med = {k: statistics.median(v) for k, v in times.items()}
    net = {k: med[k] - med["floor"] for k in ("expressions", "udf")}
    return {
        "name": name,
        "pattern": pattern,
        "zone": zone,
        "path": path_kind,
        "rows": rows,
        "times": times,
        "median": med,
        "ratio": med["udf"] / med["expressions"],
        "net_ratio": net["udf"] / net["expressions"] if net["expressions"] > 0 else None,
        "differ": counts["differ"],
        "expr_null": counts["expr_null"],
        "udf_null": counts["udf_null"],
        "examples": examples,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| pattern | path | rows | floor s | expressions s | UDF s | UDF / expr | net UDF / net expr "
        "| null (expr / UDF) | differ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r["median"]
        net = f"{r['net_ratio']:.2f}" if r["net_ratio"] is not None else "-"
        lines.append(
            f"| `{r['pattern']}` | {r['path']} | {r['rows']:,} | {m['floor']:.2f} "
            f"| {m['expressions']:.2f} | {m['udf']:.2f} | {r['ratio']:.2f} | {net} "
            f"| {r['expr_null']:,} / {r['udf_null']:,} | {r['differ']:,} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--bad", type=float, default=0.1, help="share of damaged texts")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    names = args.patterns.split(",")
    unknown = set(names) - set(PATTERNS)
    if unknown:
        parser.error(f"unknown patterns {sorted(unknown)}; known: {', '.join(PATTERNS)}")

    from strm_spark.session import UDF_JAR, get_spark
    from strm_spark.timestamps.parse import register_jvm_parser

    if not UDF_JAR.is_file():
        parser.error(f"{UDF_JAR} is missing: run `make udf`")
    for name in names:  # generate before Spark starts
        generate(name, args.rows, args.bad, args.seed)
    spark = get_spark(
        "strm-spark bench timestamps",
        master=args.master,
        extra_conf={"spark.driver.memory": "2g", "spark.ui.enabled": "false"},
    )
    if not register_jvm_parser(spark):
        print("the UDF jar is not on the class path: run `make udf` first", file=sys.stderr)
        return 2
    started = time.perf_counter()
    results = []
    for name in names:
        r = bench(spark, name, args.rows, args.bad, args.seed, args.repeats)
        results.append(r)
        print(
            f"{name}: expressions {r['median']['expressions']:.2f} s, udf "
            f"{r['median']['udf']:.2f} s, ratio {r['ratio']:.2f}, differ {r['differ']}",
            flush=True,
        )
        for ex in r["examples"]:
            print(f"    {ex}", flush=True)
    spark.stop()
    print(f"\n{table(results)}\n\n({time.perf_counter() - started:.0f} s, {args.master})")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / "timestamps.json"
    out.write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
