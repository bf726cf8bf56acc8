"""The batch job on real object storage: source, outputs and key store on `s3a://`, served by
moto's S3 server on 127.0.0.1, with the key store in its own bucket."""

from __future__ import annotations

import csv
import logging
import os
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from conftest import UCI_CSV, require_shared
from helpers import job_config, key_ring

from strm_spark import session
from strm_spark.crypto import cells as crypto
from strm_spark.errors import ConfigError
from strm_spark.pipeline.run import run_job
from strm_spark.session import DELTA_PACKAGES, S3A_PACKAGES, jar_conf, s3a_jars

ROWS = 300
REGION = "us-east-1"
SOURCE = "s3a://data/in/uci_online_retail.csv"
OUT = "s3a://data/out"
KEY_STORE = "s3a://keys/store"
FIELDS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "Country",
]


def s3_doc_overrides(key_store: str = KEY_STORE) -> dict:
    """keys and outputs of helpers.job_doc, moved to the `data` bucket and the key store to `keys`."""
    return {
        "keys": {"group_id": "s3-group", "store": key_store},
        "outputs": {
            "encrypted": f"{OUT}/encrypted",
            "data_subjects": f"{OUT}/data_subjects",
            "rejected": f"{OUT}/rejected",
            "derived": [
                {
                    "name": "decrypted-0",
                    "path": f"{OUT}/derived/d0",
                    "consent_type": "CUMULATIVE",
                    "consent_levels": [2],
                }
            ],
        },
    }


def test_s3a_jars_go_on_a_local_sessions_class_path_when_present(tmp_path, monkeypatch):
    monkeypatch.setenv("STRM_SPARK_M2", str(tmp_path))
    monkeypatch.setattr(session, "UDF_JAR", tmp_path / "no-udf.jar")
    assert jar_conf("local[2]") == {"spark.jars.packages": ",".join(DELTA_PACKAGES)}
    udf_jar = tmp_path / "strm-spark-udf.jar"
    udf_jar.touch()
    monkeypatch.setattr(session, "UDF_JAR", udf_jar)
    # The UDF jar's local file system goes with it, for local masters only (the driver runs
    # every task there; a cluster's executors would not find the class).
    assert jar_conf("local[2]") == {
        "spark.jars.packages": ",".join(DELTA_PACKAGES),
        "spark.jars": str(udf_jar),
        "spark.driver.extraClassPath": str(udf_jar),
        **session.LOCAL_FS_CONF,
    }
    assert jar_conf("spark://master:7077") == {
        "spark.jars.packages": ",".join(DELTA_PACKAGES),
        "spark.jars": str(udf_jar),
    }
    monkeypatch.setattr(session, "UDF_JAR", tmp_path / "no-udf.jar")
    for coordinate in (*DELTA_PACKAGES, *S3A_PACKAGES):
        group, artifact, version = coordinate.split(":")
        jar = tmp_path.joinpath(*group.split("."), artifact, version, f"{artifact}-{version}.jar")
        jar.parent.mkdir(parents=True)
        jar.touch()
    local = jar_conf("local[2]")
    assert local["spark.jars"].count(".jar") == len(DELTA_PACKAGES)
    assert [p.rsplit("/", 1)[1] for p in local["spark.driver.extraClassPath"].split(":")] == [
        "hadoop-aws-3.5.0.jar",
        "bundle-2.35.4.jar",
        "analyticsaccelerator-s3-1.3.1.jar",
    ]
    assert "spark.driver.extraClassPath" not in jar_conf("spark://master:7077")
    assert "spark.hadoop.fs.file.impl" not in local  # no UDF jar, Hadoop's own
    monkeypatch.setattr(session, "UDF_JAR", udf_jar)
    with_udf = jar_conf("local[2]")["spark.driver.extraClassPath"]
    assert with_udf == os.pathsep.join([local["spark.driver.extraClassPath"], str(udf_jar)])


def test_config_keeps_s3a_uris(tmp_path):
    config = job_config(SOURCE, tmp_path, **s3_doc_overrides())
    assert config.source.path == SOURCE
    assert config.key_store == KEY_STORE and config.audit == f"{KEY_STORE}/audit"
    assert config.encrypted.path == f"{OUT}/encrypted"
    assert [d.path for d in config.derived] == [f"{OUT}/derived/d0"]
    assert config.summary_dir == f"{OUT}/_runs"


def test_config_refuses_a_key_store_inside_an_s3a_output(tmp_path):
    with pytest.raises(ConfigError, match="keys.store"):
        job_config(SOURCE, tmp_path, **s3_doc_overrides(key_store=f"{OUT}/encrypted/keys"))


@contextmanager
def moto_s3_server() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1; yields its endpoint. Stopped and emptied
    afterwards (moto keeps its buckets in the process's memory)."""
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")
    level = werkzeug.level
    werkzeug.setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        try:
            urllib.request.urlopen(
                urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
            ).close()
        finally:
            server.stop()
            werkzeug.setLevel(level)


@contextmanager
def s3a_pointing_at(spark, endpoint: str, buckets: tuple[str, ...]) -> Iterator[None]:
    """The running session's S3A conf set for `endpoint`; unset afterwards, and the buckets'
    S3A file systems closed (their threads and connection pools, which also keep moto's request
    threads alive)."""
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    settings = {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.endpoint.region": REGION,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.access.key": "dummy",
        "fs.s3a.secret.key": "dummy",
        # Fail fast instead of retrying for minutes if the server is gone.
        "fs.s3a.attempts.maximum": "2",
        "fs.s3a.retry.limit": "2",
    }
    for key, value in settings.items():
        hconf.set(key, value)
    # Create the buckets' file systems and their S3 clients (made on first use) now, before
    # concurrent tasks can race to create them and leave one unclosed.
    Path = spark.sparkContext._jvm.org.apache.hadoop.fs.Path
    file_systems = [Path(f"s3a://{bucket}/").getFileSystem(hconf) for bucket in buckets]
    for fs, bucket in zip(file_systems, buckets):
        fs.exists(Path(f"s3a://{bucket}/"))
    try:
        yield
    finally:
        for fs in file_systems:
            fs.close()
        for key in settings:
            hconf.unset(key)


@pytest.fixture(scope="module")
def s3(spark):
    """Buckets `data` and `keys` on moto's S3 server, and the shared session's S3A pointing at
    it; all undone afterwards. Yields a boto3 S3 client."""
    if s3a_jars() is None:
        pytest.skip("the S3A jars are not in ~/.m2 (make jars fetches them)")
    pytest.importorskip(
        "moto.server", reason="moto[server] is not installed (pip install -e '.[test]')"
    )
    import boto3

    try:
        spark.sparkContext._jvm.java.lang.Class.forName("org.apache.hadoop.fs.s3a.S3AFileSystem")
    except Exception:
        pytest.fail("the S3A jars are in ~/.m2 but not on the session's class path (see get_spark)")
    buckets = ("data", "keys")
    with moto_s3_server() as endpoint:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="dummy",
            aws_secret_access_key="dummy",
        )
        try:
            for bucket in buckets:
                client.create_bucket(Bucket=bucket)
            with s3a_pointing_at(spark, endpoint, buckets):
                yield client
        finally:
            client.close()


def _slice() -> list[str]:
    """The header and the first ROWS rows of the UCI file (it has no multi-line records)."""
    with open(UCI_CSV, encoding="utf-8") as fh:
        return [next(fh) for _ in range(ROWS + 1)]


def _objects(client, bucket: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _s(value) -> str:
    return "" if value is None else str(value)


def _utc_day(text: str) -> str:
    local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=ZoneInfo("Europe/Amsterdam")
    )
    return local.astimezone(ZoneInfo("UTC")).date().isoformat()


@pytest.fixture(scope="module")
def s3_runs(spark, s3, tmp_path_factory):
    """The job run twice on the same S3 source: (config, first summary, second summary, input rows)."""
    require_shared()
    lines = _slice()
    s3.put_object(
        Bucket="data", Key="in/uci_online_retail.csv", Body="".join(lines).encode("utf-8")
    )
    config = job_config(SOURCE, tmp_path_factory.mktemp("s3conf"), **s3_doc_overrides())
    first = run_job(spark, config)
    second = run_job(spark, config)
    return config, first, second, list(csv.DictReader(lines))


def test_first_run_counts(s3_runs):
    _, first, _, rows = s3_runs
    expected_keys = {(r["CustomerID"], _utc_day(r["InvoiceDate"])) for r in rows}
    assert first.rows_read == ROWS and first.rows_encrypted == ROWS and first.rows_rejected == 0
    assert first.keys_needed == first.keys_created == len(expected_keys)
    assert first.derived_rows == {"decrypted-0": ROWS}
    assert first.outputs["encrypted"] == f"{OUT}/encrypted"
    assert first.outputs["run summary"].startswith(f"{OUT}/_runs/")


def test_second_run_reuses_the_keys(spark, s3_runs):
    config, first, second, _ = s3_runs
    assert second.rows_encrypted == ROWS
    assert second.keys_created == 0 and second.keys_reused == first.keys_needed
    assert len(key_ring(spark, config.key_store)) == first.keys_created


def test_encrypted_table_on_s3_decrypts_with_keys_from_the_keys_bucket(spark, s3_runs):
    _, _, _, rows = s3_runs
    keys = key_ring(spark, KEY_STORE)
    enc = (
        spark.read.format("delta")
        .load(f"{OUT}/encrypted")
        .select(*FIELDS, "CustomerID", "strmMeta.keyLink")
    )
    got = enc.collect()
    assert len(got) == 2 * ROWS  # two appending runs
    assert {r["keyLink"] for r in got} <= set(keys), "a row's key link has no key in the key store"
    plain = {r["CustomerID"] for r in rows} - {""}
    leaked = len(plain & {r["CustomerID"] for r in got})
    assert leaked == 0, "plaintext customer ids in the encrypted table"
    decrypted = Counter(
        (*(_s(r[f]) for f in FIELDS), _s(crypto.decrypt(keys[r["keyLink"]], r["CustomerID"])))
        for r in got
    )
    expected = Counter(tuple(r[f] for f in [*FIELDS, "CustomerID"]) for r in rows for _ in range(2))
    # Compare counts, never the rows: a failure report must not show customer ids.
    assert (sum((decrypted - expected).values()), sum((expected - decrypted).values())) == (0, 0)


def test_outputs_are_delta_tables_on_s3(spark, s3_runs):
    _, first, _, _ = s3_runs
    subjects = spark.read.format("delta").load(f"{OUT}/data_subjects")
    assert subjects.count() == first.data_subject_links_added > 0
    assert spark.read.format("delta").load(f"{OUT}/derived/d0").count() == 2 * ROWS
    assert spark.read.format("delta").load(f"{OUT}/rejected").count() == 0


def test_key_store_alone_in_its_bucket(s3, s3_runs):
    data, keys = _objects(s3, "data"), _objects(s3, "keys")
    assert keys and all(k.startswith("store/") for k in keys), (
        "something besides the key store in bucket keys"
    )
    assert {k.split("/")[1] for k in keys} == {"keys", "hash_keys"}
    assert any(k.startswith("store/keys/_delta_log/") for k in keys)
    # Bucket data holds the source and the data outputs, no part of the key store.
    tops = {k.split("/")[1] if k.startswith("out/") else k for k in data}
    assert tops == {
        "in/uci_online_retail.csv",
        "encrypted",
        "data_subjects",
        "rejected",
        "derived",
        "_runs",
    }
