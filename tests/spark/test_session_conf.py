"""Session settings strm-spark must change (no per-read or per-statement form exists) are
scoped: overlapping holders in threads keep them, the last one restores the caller's value."""

from __future__ import annotations

import threading

import pytest

from strm_spark.errors import UsageError
from strm_spark.session import scoped_conf

KEY = "spark.sql.csv.parser.columnPruning.enabled"
OTHER = "spark.databricks.delta.vacuum.logging.enabled"


def test_overlapping_scopes_restore_the_callers_value_once_the_last_ends(spark):
    spark.conf.set(KEY, "true")
    spark.conf.unset(OTHER)
    first_in, second_out = threading.Event(), threading.Event()
    seen: dict[str, str] = {}

    def first() -> None:
        with scoped_conf(spark, {KEY: "false", OTHER: "true"}):
            first_in.set()
            second_out.wait(30)
            seen["after the second left"] = spark.conf.get(KEY)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(30)
    with scoped_conf(spark, {KEY: "false"}):
        seen["inside both"] = spark.conf.get(KEY)
    second_out.set()
    thread.join(30)
    assert seen == {"inside both": "false", "after the second left": "false"}
    assert spark.conf.get(KEY) == "true"
    assert spark.conf.get(OTHER, None) is None


def test_a_scope_that_fails_restores_and_a_clashing_value_is_refused(spark):
    spark.conf.set(KEY, "true")
    with pytest.raises(RuntimeError, match="boom"):
        with scoped_conf(spark, {KEY: "false"}):
            raise RuntimeError("boom")
    assert spark.conf.get(KEY) == "true"
    with scoped_conf(spark, {KEY: "false"}):
        with pytest.raises(UsageError, match="held at another value"):
            with scoped_conf(spark, {KEY: "true"}):
                pass
        assert spark.conf.get(KEY) == "false"
    assert spark.conf.get(KEY) == "true"


def test_an_optional_setting_the_session_refuses_is_left_as_it_is(spark):
    """A static setting cannot change at run time, as a serverless session refuses most: an
    optional scope skips it and still holds the others; a required one fails."""
    static = "spark.sql.warehouse.dir"
    before = spark.conf.get(static)
    spark.conf.set(KEY, "true")
    with scoped_conf(spark, {static: "/elsewhere", KEY: "false"}, optional=True):
        assert spark.conf.get(static) == before
        assert spark.conf.get(KEY) == "false"
    assert spark.conf.get(KEY) == "true"
    with pytest.raises(Exception, match="(?i)static"):
        with scoped_conf(spark, {static: "/elsewhere"}):
            pass


def test_a_run_turns_adaptive_execution_off_on_a_local_master(spark):
    from strm_spark.pipeline.run import _run_conf

    assert spark.conf.get("spark.master").startswith("local")
    assert _run_conf(spark) == {"spark.sql.adaptive.enabled": "false"}
