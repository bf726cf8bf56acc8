"""SparkSession with Delta Lake: reuse the active one (spark-submit, Databricks) or start a
local one that loads Delta's jars, and S3A's when present, from ~/.m2 (fetched by `make setup`),
offline."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path

from pyspark.sql import SparkSession

from strm_spark.errors import UsageError

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
# Delta's jars follow the installed delta-spark pip package (as `configure_spark_with_delta_pip`
# does), built for the running Spark line. Some pip releases have no jars of their own version on
# Maven Central: they load the jars of the same line named here.
_JARS_FOR_PIP = {"4.4.1": "4.4.0"}
# Without the pip package (a runtime with its own Delta): the Delta line of each Spark line.
_DELTA_FOR_SPARK = {"4.0": "4.0.0", "4.2": "4.4.0"}


def delta_packages(
    spark_version: str | None = None, delta_version: str | None = None
) -> tuple[str, str]:
    """Maven coordinates of the Delta jars for this pyspark and delta-spark (pip) pair."""
    import pyspark

    spark_line = ".".join((spark_version or pyspark.__version__).split(".")[:2])
    if delta_version is None:
        try:
            delta_version = metadata.version("delta-spark")
        except metadata.PackageNotFoundError:
            delta_version = _DELTA_FOR_SPARK.get(spark_line, _DELTA_FOR_SPARK["4.2"])
    version = _JARS_FOR_PIP.get(delta_version, delta_version)
    # Delta 4.0 was built for Spark 4.0 only; later lines name the Spark line they are built for.
    artifact = (
        "delta-spark_2.13" if version.startswith("4.0.") else f"delta-spark_{spark_line}_2.13"
    )
    return f"io.delta:{artifact}:{version}", f"io.delta:delta-storage:{version}"


DELTA_PACKAGES = delta_packages()
DELTA_JAR_VERSION = DELTA_PACKAGES[0].rsplit(":", 1)[1]
# S3A (`s3a://`) for pyspark's bundled Hadoop 3.5.0: hadoop-aws and its two compile
# dependencies in hadoop-aws 3.5.0's pom (the AWS SDK v2 bundle is ~690 MB). Optional.
S3A_PACKAGES = (
    "org.apache.hadoop:hadoop-aws:3.5.0",
    "software.amazon.awssdk:bundle:2.35.4",
    "software.amazon.s3.analyticsaccelerator:analyticsaccelerator-s3:1.3.1",
)


# Spark's Kafka source (`source.format: kafka`) for pyspark's Spark line, and the three jars
# its pom needs at run time (fetched one by one: its pom also names a test jar Maven Central
# does not serve). Optional: put on local sessions' class path when present.
KAFKA_PACKAGES = (
    "org.apache.spark:spark-sql-kafka-0-10_2.13:{spark}",
    "org.apache.spark:spark-token-provider-kafka-0-10_2.13:{spark}",
    "org.apache.kafka:kafka-clients:3.9.2",
    "org.apache.commons:commons-pool2:2.13.1",
)


def _m2_jars(coordinates: tuple[str, ...], m2: Path | None = None) -> list[str] | None:
    """Paths of these jars in the local Maven repository, or None if any is missing."""
    repo = m2 or Path(os.environ.get("STRM_SPARK_M2", Path.home() / ".m2" / "repository"))
    jars = []
    for coordinate in coordinates:
        group, artifact, version = coordinate.split(":")
        jar = repo.joinpath(*group.split("."), artifact, version, f"{artifact}-{version}.jar")
        if not jar.is_file():
            return None
        jars.append(str(jar))
    return jars


def delta_jars(m2: Path | None = None) -> list[str] | None:
    """Paths of Delta's jars in the local Maven repository, or None if any is missing."""
    return _m2_jars(DELTA_PACKAGES, m2)


def kafka_jars(m2: Path | None = None) -> list[str] | None:
    """Paths of Spark's Kafka connector jars for this pyspark in the local Maven repository,
    or None if any is missing."""
    import pyspark

    spark = pyspark.__version__.split(".dev")[0]
    return _m2_jars(tuple(c.format(spark=spark) for c in KAFKA_PACKAGES), m2)


def s3a_jars(m2: Path | None = None) -> list[str] | None:
    """Paths of the S3A connector's jars in the local Maven repository, or None if any is missing
    or pyspark bundles another Hadoop than the one hadoop-aws was built for."""
    import pyspark

    hadoop = S3A_PACKAGES[0].rsplit(":", 1)[1]
    bundled = Path(pyspark.__file__).parent / "jars" / f"hadoop-client-api-{hadoop}.jar"
    return _m2_jars(S3A_PACKAGES, m2) if bundled.is_file() else None


# Spark's log4j2 defaults at STRM_SPARK_LOG_LEVEL (default warn), for the local sessions.
LOG4J2 = Path(__file__).resolve().parent / "log4j2.properties"

# strm_decrypt in the JVM (see strm_spark.sql), built by `make udf`; optional.
UDF_JAR = Path(__file__).resolve().parent / "jars" / "strm-spark-udf.jar"
# The jar's local file system (io.strmspark.fs): Hadoop's, with java.nio where Hadoop without its
# native library starts a `chmod` or `readlink` process per file operation (about 300 per small
# run: 15-25% of its time on the driver). For local masters, where the driver runs every task.
LOCAL_FS_CONF = {
    "spark.hadoop.fs.file.impl": "io.strmspark.fs.LocalFileSystem",
    "spark.hadoop.fs.AbstractFileSystem.file.impl": "io.strmspark.fs.LocalFs",
}


def jar_conf(master: str) -> dict[str, str]:
    """Spark conf that loads Delta's jars (from ~/.m2, else resolved by Ivy), the UDF jar when
    built and, for a local master, S3A's when they are in ~/.m2 and the UDF jar's local file
    system (`LOCAL_FS_CONF`).

    S3A's jars go on the driver's class path, which a local master's executors share:
    `spark.jars` would copy the ~690 MB SDK bundle into every session's temporary folder (and
    ship it to every executor of a cluster, which should bring its own connector)."""
    delta, s3a = delta_jars(), s3a_jars()
    conf = (
        {"spark.jars": ",".join(delta + (kafka_jars() or []))}
        if delta
        else {"spark.jars.packages": ",".join(DELTA_PACKAGES)}
    )
    local = master == "local" or master.startswith("local[")
    driver_path = [*s3a] if s3a and local else []
    if UDF_JAR.is_file():  # about 5 MB (Tink bundled): shipped to executors with the session
        conf["spark.jars"] = ",".join([*filter(None, [conf.get("spark.jars")]), str(UDF_JAR)])
        if local:  # Hadoop loads a file system from the driver's class path
            driver_path.append(str(UDF_JAR))
            conf.update(LOCAL_FS_CONF)
    if driver_path:
        conf["spark.driver.extraClassPath"] = os.pathsep.join(driver_path)
    return conf


def local_conf(master: str, shuffle_partitions: int | None = None) -> dict[str, str]:
    """The conf of the sessions strm-spark starts itself: Delta, UTC, small-job defaults, its
    logging, and the jars of `jar_conf`. Also the conf of a local Spark Connect server
    (`spark-submit --class org.apache.spark.sql.connect.service.SparkConnectServer`)."""
    return {
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(
            shuffle_partitions or max(2, 2 * (os.cpu_count() or 2))
        ),
        # Delta's snapshot state is small here; its default of 50 partitions dominates small jobs.
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # No table-size statistics computed after each commit (usage logging only): a Spark job
        # per commit saved.
        "spark.databricks.delta.commitStats.collect": "false",
        "spark.sql.debug.maxToStringFields": "500",
        # Files owner-only from their creation (0600 in 0700 folders), not only when a run
        # ends: Hadoop's umask for every table, folder and commit the session writes.
        "spark.hadoop.fs.permissions.umask-mode": "077",
        "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={LOG4J2}",
        **jar_conf(master),
    }


def get_spark(
    app_name: str = "strm-spark",
    master: str | None = None,
    shuffle_partitions: int | None = None,
    extra_conf: dict[str, str] | None = None,
    remote: str | None = None,
) -> SparkSession:
    """The active SparkSession; a Spark Connect session when `remote` (`sc://host:port`) or
    SPARK_REMOTE names a server; under spark-submit or on Databricks the launcher's session
    (its master and conf kept, Delta added where missing); else a new local one with Delta."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    remote = remote or os.environ.get("SPARK_REMOTE")
    if remote:
        return SparkSession.builder.remote(remote).appName(app_name).getOrCreate()
    if master is None:
        launched = launcher_session()
        if launched is not None:
            return launched
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    master = master or os.environ.get("STRM_SPARK_MASTER", "local[*]")
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in {**local_conf(master, shuffle_partitions), **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    # The JVM starts with umask 077, so Spark's scratch files (spark.local.dir: shuffle and
    # spill blocks, which can hold subject ids) are owner-only too; this process's umask is
    # restored once the JVM runs.
    old = os.umask(0o077)
    try:
        return builder.getOrCreate()
    finally:
        os.umask(old)


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


_SCOPED_LOCK = threading.Lock()
# (session, key) -> [the value before the first holder, holders, the value they set]
_SCOPED: dict[tuple[int, str], list] = {}


@contextlib.contextmanager
def scoped_conf(
    spark: SparkSession, settings: Mapping[str, str], optional: bool = False
) -> Iterator[None]:
    """Session settings Spark offers no per-read or per-statement form of, set for the duration
    of the block and restored afterwards. Threads of one process may overlap (two jobs, a purge
    beside a job): the first to enter saves the caller's values, the last to leave restores
    them, and none restores a value another still relies on. `optional`: a setting the session
    refuses (a Databricks serverless session accepts only a few) is left as it is."""
    entered = []
    try:
        with _SCOPED_LOCK:
            for key, value in settings.items():
                slot = _SCOPED.get((id(spark), key))
                if slot is None:
                    try:
                        before = spark.conf.get(key, None)
                        spark.conf.set(key, value)
                    except Exception:
                        if not optional:
                            raise
                        continue
                    _SCOPED[(id(spark), key)] = [before, 1, value]
                elif slot[2] != value:
                    raise UsageError(f"{key} is held at another value by a concurrent task")
                else:
                    slot[1] += 1
                entered.append(key)
        yield
    finally:
        with _SCOPED_LOCK:
            for key in entered:
                slot = _SCOPED[(id(spark), key)]
                slot[1] -= 1
                if slot[1] == 0:
                    del _SCOPED[(id(spark), key)]
                    if slot[0] is None:
                        spark.conf.unset(key)
                    else:
                        spark.conf.set(key, slot[0])
