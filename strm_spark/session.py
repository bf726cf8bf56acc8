"""SparkSession with Delta Lake: reuse the active one (spark-submit, Databricks) or start a
local one that loads Delta's jars from ~/.m2 (fetched by `make setup`), offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DELTA_JAR_VERSION = "4.4.0"
SCALA_SPARK = "4.2_2.13"
DELTA_PACKAGES = (
    f"io.delta:delta-spark_{SCALA_SPARK}:{DELTA_JAR_VERSION}",
    f"io.delta:delta-storage:{DELTA_JAR_VERSION}",
)


def delta_jars(m2: Path | None = None) -> list[str] | None:
    """Paths of Delta's jars in the local Maven repository, or None if any is missing."""
    repo = m2 or Path(os.environ.get("STRM_SPARK_M2", Path.home() / ".m2" / "repository"))
    jars = []
    for coordinate in DELTA_PACKAGES:
        group, artifact, version = coordinate.split(":")
        jar = repo.joinpath(*group.split("."), artifact, version, f"{artifact}-{version}.jar")
        if not jar.is_file():
            return None
        jars.append(str(jar))
    return jars


def get_spark(app_name: str = "strm-spark", master: str | None = None,
              shuffle_partitions: int | None = None, extra_conf: dict[str, str] | None = None) -> SparkSession:
    """The active SparkSession; under spark-submit or on Databricks the launcher's session
    (its master and conf kept, Delta added where missing); else a new local one with Delta."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if master is None:
        launched = launcher_session()
        if launched is not None:
            return launched
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    master = master or os.environ.get("STRM_SPARK_MASTER", "local[*]")
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.appName(app_name).master(master)
        .config("spark.sql.extensions", DELTA_EXTENSION)
        .config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions or max(2, 2 * (os.cpu_count() or 2))))
        # Delta's snapshot state is small here; its default of 50 partitions dominates small jobs.
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        .config("spark.sql.debug.maxToStringFields", "500")
        .config("spark.driver.extraJavaOptions", "-Dlog4j2.level=WARN")
    )
    jars = delta_jars()
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    else:
        builder = builder.config("spark.jars.packages", ",".join(DELTA_PACKAGES))
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("STRM_SPARK_LOG_LEVEL", "WARN"))
    return spark


def on_databricks() -> bool:
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def launcher_session() -> SparkSession | None:
    """The session of the process's launcher, or None when there is none (plain Python).

    Under spark-submit the Python driver runs beside a JVM that already holds the submitted
    conf (master, jars, resources); a session built with `get_spark`'s local defaults would
    override the master. So build it from that conf, adding Delta's extension and catalog only
    where missing. On Databricks the cluster's session is used as it is (Delta is built in).
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return None
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connect to spark-submit's JVM to read its conf
    conf = SparkConf()
    builder = SparkSession.builder
    extensions = [e.strip() for e in conf.get("spark.sql.extensions", "").split(",") if e.strip()]
    if DELTA_EXTENSION not in extensions:
        builder = builder.config("spark.sql.extensions", ",".join([*extensions, DELTA_EXTENSION]))
    if not conf.contains("spark.sql.catalog.spark_catalog"):
        builder = builder.config("spark.sql.catalog.spark_catalog", DELTA_CATALOG)
    return builder.getOrCreate()
