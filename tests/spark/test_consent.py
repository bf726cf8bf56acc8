"""Consent extraction and the CUMULATIVE / GRANULAR rules of derived outputs."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from strm_spark.consent import (
    CUMULATIVE,
    GRANULAR,
    allows,
    allows_column,
    consent_levels,
    decrypted_fields,
)

MAPPING = [("all", [0, 1, 2, 3]), ("none", []), ("7", [1])]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("all", [0, 1, 2, 3]),  # mapping first
        ("none", []),  # mapped to no consent at all
        ("7", [1]),  # mapping wins over parsing
        ("[1,2]", [1, 2]),
        (" [ 0 , 3 ] ", [0, 3]),
        ("[]", []),
        ("2", [2]),
        ("analytics", [9]),  # unknown word -> default
        ("[1,x]", [9]),
        ("-1", [9]),
        ("", [9]),
        (None, [9]),
    ],
)
def test_consent_extraction_order(spark, value, expected):
    df = spark.createDataFrame([(value,)], "c string")
    got = df.select(consent_levels(F.col("c"), [9], MAPPING).alias("l")).first()["l"]
    assert got == expected


def test_without_extractor_every_row_gets_the_default(spark):
    df = spark.createDataFrame([("[1]",), (None,)], "c string")
    rows = df.select(consent_levels(None, [2]).alias("l")).collect()
    assert [r["l"] for r in rows] == [[2], [2]]


PII = {"id": 0, "ip": 1, "email": 2, "phone": 3}


@pytest.mark.parametrize(
    ("consent", "rule", "levels", "passes"),
    [
        ([0, 1], CUMULATIVE, [1], True),
        ([2], CUMULATIVE, [1], True),  # cumulative: the highest level counts
        ([0], CUMULATIVE, [1], False),
        ([], CUMULATIVE, [0], False),  # no consent: in no derived output
        ([0], CUMULATIVE, [0], True),  # level 0
        ([0, 2], GRANULAR, [2], True),
        ([1, 3], GRANULAR, [2], False),
        ([1, 2, 3], GRANULAR, [1, 3], True),
        ([1], GRANULAR, [1, 3], False),
        ([], GRANULAR, [0], False),
        ([5], CUMULATIVE, [4], True),  # levels no PII field uses
        ([5], GRANULAR, [4], False),
    ],
)
def test_row_rules_python_and_spark_agree(spark, consent, rule, levels, passes):
    assert allows(consent, rule, levels) is passes
    df = spark.createDataFrame([(consent,)], "c array<int>")
    assert df.select(allows_column(F.col("c"), rule, levels).alias("ok")).first()["ok"] is passes


def test_null_consent_passes_nothing(spark):
    df = spark.createDataFrame([(None,)], "c array<int>")
    assert df.select(
        allows_column(F.col("c"), CUMULATIVE, [0]).alias("a"),
        allows_column(F.col("c"), GRANULAR, [0]).alias("b"),
    ).first() == (False, False)


def test_decrypted_fields_per_rule():
    assert decrypted_fields(PII, CUMULATIVE, [1]) == ("id", "ip")
    assert decrypted_fields(PII, CUMULATIVE, [0]) == ("id",)
    assert decrypted_fields(PII, CUMULATIVE, [9]) == ("id", "ip", "email", "phone")
    assert decrypted_fields(PII, GRANULAR, [2]) == ("email",)
    assert decrypted_fields(PII, GRANULAR, [1, 3]) == ("ip", "phone")
    assert decrypted_fields(PII, GRANULAR, [7]) == ()
