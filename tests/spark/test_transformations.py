"""DataFrame steps on tiny inline DataFrames (each with a null row), compared with chispa."""

from __future__ import annotations

import datetime as dt

from chispa import assert_df_equality
from pyspark.sql import functions as F

from strm_spark import columns as cols
from strm_spark.contract.parse import parse_contract
from strm_spark.pipeline import transforms as tf

CONTRACT = parse_contract(
    {
        "schema": {
            "name": "t",
            "nodes": [
                {"name": "id", "type": "STRING", "required": True},
                {"name": "email", "type": "STRING"},
                {"name": "phone", "type": "STRING"},
                {"name": "n", "type": "INTEGER"},
                {"name": "ts", "type": "STRING"},
            ],
        },
        "key_field": "id",
        "pii_fields": {"email": 1, "phone": 2},
        "validations": [{"field": "email", "type": "regex", "value": "[a-z]+@[a-z]+"}],
    }
)


def test_typing_validation_and_time_reasons(spark):
    df = spark.createDataFrame(
        [
            ("a", "x@y", "3", "2024-01-01 00:00:00"),
            ("b", "bad", "x", "2024-01-01 00:00:00"),
            (None, None, None, None),
            ("d", "x@y", " 7 ", "yesterday"),
        ],
        "id string, email string, n string, ts string",
    ).withColumn("phone", F.lit(None).cast("string"))
    got = (
        df.transform(tf.with_typed_fields, CONTRACT)
        .transform(tf.with_event_time, "ts", "yyyy-MM-dd HH:mm:ss", "UTC")
        .transform(tf.with_validations, CONTRACT)
        .select("id", "n", cols.EPOCH_MS, cols.DAY, cols.REASONS)
    )
    expected = spark.createDataFrame(
        [
            ("a", 3, 1704067200000, dt.date(2024, 1, 1), []),
            (
                "b",
                None,
                1704067200000,
                dt.date(2024, 1, 1),
                [
                    "field 'n' is not a valid INTEGER",
                    "field 'email' does not match regex '[a-z]+@[a-z]+'",
                ],
            ),
            (
                None,
                None,
                None,
                None,
                ["timestamp field 'ts' is missing", "required field 'id' is missing"],
            ),
            (
                "d",
                7,
                None,
                None,
                ["timestamp field 'ts' does not match pattern 'yyyy-MM-dd HH:mm:ss'"],
            ),
        ],
        f"id string, n int, {cols.EPOCH_MS} bigint, {cols.DAY} date, {cols.REASONS} array<string>",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def _processed(spark):
    """Rows as the job has them after encryption: plaintext fields, PII copies and ciphertext."""
    return spark.createDataFrame(
        [
            (
                "a",
                "e1",
                "p1",
                1,
                "t1",
                "e1",
                "p1",
                "ct-e1",
                "ct-p1",
                [0, 1, 2],
                1000,
                "k1",
                dt.date(2024, 1, 1),
            ),
            (
                "b",
                "e2",
                "p2",
                2,
                "t2",
                "e2",
                "p2",
                "ct-e2",
                "ct-p2",
                [1],
                2000,
                "k2",
                dt.date(2024, 1, 1),
            ),
            (
                "c",
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                [],
                3000,
                "k3",
                dt.date(2024, 1, 2),
            ),
            (
                "d",
                "e4",
                None,
                4,
                "t4",
                "e4",
                None,
                "ct-e4",
                None,
                [2],
                4000,
                "k4",
                dt.date(2024, 1, 2),
            ),
        ],
        f"id string, email string, phone string, n int, ts string, {cols.pii_column(0)} string, "
        f"{cols.pii_column(1)} string, {cols.enc_column(0)} string, {cols.enc_column(1)} string, "
        f"{cols.CONSENT} array<int>, {cols.EPOCH_MS} bigint, {cols.KEY_LINK} string, {cols.DAY} date",
    )


def _expected(spark, rows):
    schema = (
        "id string, email string, phone string, n int, ts string, strmMeta struct<eventContractRef: string, "
        "nonce: bigint, timestamp: bigint, keyLink: string, billingId: string, consentLevels: array<int>>, "
        "strmDay date"
    )
    return spark.createDataFrame(
        [(i, e, p, n, t, ("h/n/1", 0, ms, k, None, c), d) for i, e, p, n, t, c, ms, k, d in rows],
        schema,
    )


def test_cumulative_derived_rows(spark):
    got = tf.derived_rows(_processed(spark), CONTRACT, "h/n/1", "CUMULATIVE", [1])
    expected = _expected(
        spark,
        [
            ("a", "e1", "ct-p1", 1, "t1", [0, 1, 2], 1000, "k1", dt.date(2024, 1, 1)),
            ("b", "e2", "ct-p2", 2, "t2", [1], 2000, "k2", dt.date(2024, 1, 1)),
            ("d", "e4", None, 4, "t4", [2], 4000, "k4", dt.date(2024, 1, 2)),
        ],
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_granular_derived_rows_with_masking(spark):
    got = tf.derived_rows(
        _processed(spark),
        CONTRACT,
        "h/n/1",
        "GRANULAR",
        [2],
        mask={"id": lambda c: F.upper(c), "email": lambda c: F.concat(c, F.lit("!"))},
    )
    expected = _expected(
        spark,
        [
            ("A", "ct-e1!", "p1", 1, "t1", [0, 1, 2], 1000, "k1", dt.date(2024, 1, 1)),
            ("D", "ct-e4!", None, 4, "t4", [2], 4000, "k4", dt.date(2024, 1, 2)),
        ],
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_encrypted_rows_keep_ciphertext_and_drop_plaintext(spark):
    got = tf.encrypted_rows(_processed(spark), CONTRACT, "h/n/1")
    assert not [c for c in got.columns if c.startswith("__")]
    expected = _expected(
        spark,
        [
            ("a", "ct-e1", "ct-p1", 1, "t1", [0, 1, 2], 1000, "k1", dt.date(2024, 1, 1)),
            ("b", "ct-e2", "ct-p2", 2, "t2", [1], 2000, "k2", dt.date(2024, 1, 1)),
            ("c", None, None, None, None, [], 3000, "k3", dt.date(2024, 1, 2)),
            ("d", "ct-e4", None, 4, "t4", [2], 4000, "k4", dt.date(2024, 1, 2)),
        ],
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
