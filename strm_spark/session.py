"""SparkSession with Delta Lake: reuse the active one (spark-submit, Databricks) or start a
local one that loads Delta's jars from ~/.m2 (fetched by `make setup`), offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

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
    """The active SparkSession, or a new local one with Delta configured."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    master = master or os.environ.get("STRM_SPARK_MASTER", "local[*]")
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.appName(app_name).master(master)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
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
