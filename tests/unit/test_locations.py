"""Locations, decided when the config loads: paths, URIs, volumes, table and schema names, and
the checks that keep outputs and the key store apart. Pure Python, no JVM."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BLOGPOST, require_shared
from helpers import job_doc

from strm_spark.compat.strm.config import load_strm_job
from strm_spark.config.load import parse_job_config
from strm_spark.errors import ConfigError
from strm_spark.storage.location import Location, resolve_location


def _named(doc: dict, **outputs: object) -> dict:
    doc["outputs"].update(outputs)
    return doc


def _config(doc, tmp_path):
    return parse_job_config(doc, "job.yaml", tmp_path)


def _error(doc, tmp_path) -> str:
    with pytest.raises(ConfigError) as info:
        _config(doc, tmp_path)
    return str(info.value)


@pytest.mark.parametrize(
    ("written", "kind", "value"),
    [
        ("out/enc", "path", "{base}/out/enc"),
        ("file:///data/enc", "path", "/data/enc"),
        ("s3a://bucket/enc/", "uri", "s3a://bucket/enc"),
        ("dbfs:/Volumes/main/raw/vol/enc", "uri", "dbfs:/Volumes/main/raw/vol/enc"),
        ("hdfs:/warehouse/enc", "uri", "hdfs:/warehouse/enc"),
        (
            "abfss://c@acct.dfs.core.windows.net/enc",
            "uri",
            "abfss://c@acct.dfs.core.windows.net/enc",
        ),
        ("/Volumes/main/raw/vol/enc", "volume", "/Volumes/main/raw/vol/enc"),
    ],
)
def test_a_written_location_resolves_once_to_its_kind(tmp_path, written, kind, value):
    found = resolve_location(written, tmp_path)
    assert (found.kind, str(found)) == (kind, value.format(base=tmp_path))
    # What each kind allows: file modes on local paths only, one-file output on local paths
    # and volumes.
    assert (found.local is not None) == (kind == "path")
    assert (found.file_path is not None) == (kind in ("path", "volume"))


def test_names_are_tables_only_when_written_as_such(tmp_path):
    doc = _named(
        job_doc("in.csv", tmp_path / "out"),
        encrypted={"table": "main.events.clickstream", "cluster_by": ["strmDay"]},
        rejected={"table": "quarantine.rejected"},
        data_subjects={"path": {"table": "subjects.data_subjects"}},
    )
    doc["keys"]["store"] = {"schema": "main.keystore"}
    config = _config(doc, tmp_path)
    assert config.encrypted.path == Location("main.events.clickstream", "table")
    assert config.encrypted.path.sql == "`main`.`events`.`clickstream`"
    assert config.encrypted.cluster_by == ("strmDay",)
    assert config.data_subjects.path.kind == "table"
    assert config.key_store.child("keys") == "main.keystore.keys"
    assert config.audit == Location("main.keystore.audit", "table")
    # The job's own tables go to the encrypted table's schema, prefixed.
    assert config.summary_dir == Location("main.events", "schema")
    assert "main.keystore.hash_keys" in config.written_locations()
    # A path that looks like a name stays a path.
    doc["outputs"]["rejected"] = "quarantine.rejected"
    assert _config(doc, tmp_path).rejected.path.kind == "path"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"encrypted": {"table": "events"}}, "outputs.encrypted: not a table name"),
        ({"encrypted": {"table": "a.b.c.d"}}, "not a table name"),
        ({"encrypted": {"table": "main.events.click-stream"}}, "not a table name"),
        ({"encrypted": {"view": "x.y"}}, "outputs.encrypted.view: unknown field"),
        ({"rejected": {"path": "r", "table": "x.y"}}, "expected exactly one of path or table"),
        ({"rejected": {"path": {"schema": "x"}}}, "expected a path, a URI or {table: name}"),
        (
            {"encrypted": {"table": "events.t"}, "rejected": {"table": "spark_catalog.events.t"}},
            "outputs.rejected: same or nested table as outputs.encrypted",
        ),
        (
            {"rejected": {"table": "events.t", "format": "parquet"}},
            "a table output is a Delta table",
        ),
    ],
)
def test_names_that_do_not_parse_or_collide_are_refused(tmp_path, change, expected):
    doc = _named(job_doc("in.csv", tmp_path / "out"), **change)
    assert expected in _error(doc, tmp_path)


def test_a_key_store_schema_keeps_apart_from_the_data_unless_told(tmp_path):
    doc = _named(job_doc("in.csv", tmp_path / "out"), encrypted={"table": "main.data.events"})
    doc["keys"]["store"] = {"schema": "main.data"}
    assert "keys.store: the key store's schema holds outputs.encrypted" in _error(doc, tmp_path)
    doc["keys"]["store"] = {"schema": "data"}  # no catalog: matches any
    assert "the key store's schema holds" in _error(doc, tmp_path)
    doc["keys"]["apart_from_data"] = False
    assert _config(doc, tmp_path).key_store == "data"
    # Even then, no output may take the name of one of the store's tables.
    doc["outputs"]["rejected"] = {"table": "main.data.keys"}
    assert "name no output keys" in _error(doc, tmp_path)
    doc["keys"]["store"] = {"table": "main.keys"}
    assert "keys.store: expected a path, a URI or {schema: name}" in _error(doc, tmp_path)


def test_strm_jobs_take_a_key_store_schema(tmp_path):
    require_shared()
    args = (
        BLOGPOST / "batch-job-config.json",
        BLOGPOST / "online-retail-contract.json",
        BLOGPOST / "online-retail.json",
        {"s3-batch-demo": str(tmp_path)},
    )
    store = load_strm_job(*args, key_schema="main.strm_keys").key_store
    assert store == Location("main.strm_keys", "schema")
    with pytest.raises(ConfigError, match="--keys-schema: not a schema name"):
        load_strm_job(*args, key_schema="a.b.c")


def test_the_bench_builds_its_job_configs_as_the_loader_does(tmp_path):
    """`make bench` builds its configs by hand: their locations are Locations too (a plain
    string there broke the bench, which no other test runs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_run", Path(__file__).resolve().parents[2] / "bench" / "run.py"
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = bench._config(tmp_path / "in.csv", tmp_path / "out", derived=True)
    assert all(isinstance(loc, Location) for loc in config.written_locations())
    assert config.source.path.file_path == tmp_path / "in.csv"
    assert config.audit == Location(str(tmp_path / "out" / "keystore" / "audit"), "path")
