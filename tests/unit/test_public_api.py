"""strm_spark uses Spark's public API only, so every command runs on a Spark Connect session."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "strm_spark"
# py4j's gateway and Delta's Python API: neither exists on a Spark Connect session.
FORBIDDEN = re.compile(r"\b_jvm\b|\b_jsc\b|\bsparkContext\b|\bDeltaTable\b|\bhadoopConfiguration\b")


def test_no_py4j_or_delta_python_api_in_the_package():
    hits = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_the_pattern_finds_what_it_forbids():
    assert FORBIDDEN.search("spark.sparkContext._jvm.org.apache.hadoop.fs.Path(p)")
    assert FORBIDDEN.search("DeltaTable.forPath(spark, path)")
    assert not FORBIDDEN.search("spark.read.format('delta').load(path)")
