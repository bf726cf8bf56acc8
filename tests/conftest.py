"""Shared fixtures (one local SparkSession with Delta for the whole test session) and the tiers.

Tests live in three folders, each a marker: `unit/` (no JVM: config, contracts, patterns,
crypto, packaging), `spark/` (the session's JVM: jobs, outputs, SQL, subjects) and `e2e/`
(processes of their own: CLI runs, SIGKILL and concurrency, a standalone cluster, a Spark
Connect server, S3). `make test-unit` runs the first alone, `make test` all three.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BLOGPOST = SHARED / "data" / "strm-blogpost"
UCI_CSV = BLOGPOST / "uci_online_retail.csv"
UCI_CONTRACT = REPO / "conf" / "online_retail_contract.yaml"

# The JVMs the suite starts in subprocesses (jobs run by the CLI, a standalone cluster) are
# short-lived and work on small data: the C2 JIT compiler costs them more CPU than it saves.
# With the C1 compiler alone a 150-row job process took about 80 instead of 128 CPU seconds
# (2 cores); several such processes run at once in the SIGKILL and concurrency tests. The
# session's own JVM runs every in-process test and keeps C2 (C1 alone made the suite slower).
# C1 alone reserves a 48 MB code cache, which a forget's JVM filled (29,000 methods: "CodeCache
# is full. Compiler has been disabled") and once failed in its purge step; 256 MB is reserved address
# space, not memory used.
SUBPROCESS_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m"
os.environ.setdefault("JAVA_TOOL_OPTIONS", SUBPROCESS_JAVA_OPTIONS)

# The session's JVM keeps C2 and collects garbage with the parallel collector: ten 300-row runs
# in one session took 100-104 CPU seconds with it against 107-120 with G1, the default (101-109
# with the serial collector; two sessions each, alternating). The short-lived subprocess JVMs
# showed no difference (a CLI run: 32-34 machine CPU seconds with either) and keep the default.
SESSION_JAVA_OPTIONS = "-XX:+UseParallelGC"

# The session's queries run on a few hundred rows, where generating and compiling Java code for
# each plan costs far more than it saves: a warm 300-row job took 10.1-10.9 CPU seconds with
# expressions and plans interpreted against 14.5-16.2 with Spark's code generation (and 7.3-7.6
# s against 10.2-11.6 s wall), mostly Janino and the JIT compiling generated classes, and
# Delta's encoders formatting their code. Results are the same by Spark's contract. Processes
# the suite starts only to be processes of their own (the SIGKILL and concurrency runs, the
# Connect server) interpret too (INTERPRETED_JAVA_OPTIONS, TEST_CONF); the CLI run of
# tests/e2e/test_cli.py, the standalone cluster and the Spark 4.0 runtime keep Spark's
# defaults, so generated code, the JVM UDFs' included, still runs end to end.
# Adaptive query execution is off for the same reason: on a few hundred rows it only splits each
# query into more Spark jobs (a warm forget 293 jobs with it, 142 without; a warm 300-row run 54
# and 36), each paying task serialization and scheduling; the forget-heavy files
# test_subjects, test_sql and test_forget_shared took 289 CPU seconds with it, 274 without.
TEST_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.adaptive.enabled": "false",
}
# The same for a subprocess JVM: Spark reads `spark.*` system properties into its conf.
INTERPRETED_JAVA_OPTIONS = SUBPROCESS_JAVA_OPTIONS + "".join(
    f" -D{key}={value}" for key, value in TEST_CONF.items()
)


TIERS = ("unit", "spark", "e2e")

# The order pytest-xdist hands whole files to its two workers (`make test` runs it with
# --no-loadscope-reorder, which would otherwise order files by their number of tests): the
# longest modules first, so that none starts last while the other worker idles, then the e2e
# tier, the spark tier and the unit tier. CI (at 423 tests) measured these four at about 530,
# 320, 250 and 200 s of work; the next longest module took about 160 s.
LONGEST_FIRST = ("test_stream.py", "test_catalog.py", "test_kms.py", "test_connect.py")


def _run_order(item) -> tuple[int, int]:
    if item.path.parent.name == "e2e" and item.path.name in LONGEST_FIRST:
        return (0, LONGEST_FIRST.index(item.path.name))
    return (1 + ("e2e", "spark", "unit").index(item.path.parent.name), 0)


def pytest_collection_modifyitems(config, items):
    """Mark each test with its folder's tier (a unit test may not ask for the Spark session),
    and order the files for the workers (`LONGEST_FIRST`)."""
    for item in items:
        tier = item.path.parent.name
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(TIERS)}}}/")
        item.add_marker(tier)
        if tier == "unit" and "spark" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid}: a unit test runs without a JVM (no `spark`)")
    items.sort(key=_run_order)  # stable: a file's tests keep their order


def require_shared() -> None:
    if not UCI_CSV.is_file():
        pytest.skip(f"the STRM reference data is not beside the repo ({BLOGPOST})")


@pytest.fixture(scope="session")
def spark():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from strm_spark.session import get_spark

    ours = os.environ.get("JAVA_TOOL_OPTIONS") == SUBPROCESS_JAVA_OPTIONS
    if ours:
        os.environ["JAVA_TOOL_OPTIONS"] = SESSION_JAVA_OPTIONS
    try:
        session = get_spark(
            "strm-spark-tests",
            master="local[2]",
            shuffle_partitions=2,
            extra_conf={**TEST_CONF, **SESSION_CONF},
        )
    finally:
        if ours:
            os.environ["JAVA_TOOL_OPTIONS"] = SUBPROCESS_JAVA_OPTIONS
    yield session
    session.stop()


# One session serves a worker's whole share of the suite (some 200 tests, hundreds of Delta
# tables). Delta's snapshot caches and Spark's plan caches fill the default 1 GiB heap to
# some 300 MB and more by the end (measured: +115, +89 and +0 MB over three runs of the key
# rotation test), and a test that writes a 4 MiB value (test_a_huge_pii_field_round_trips)
# then ran out of heap in CI. Twice that leaves it room; the machine has 24 GiB.
SESSION_CONF = {"spark.driver.memory": "2g"}

DEMO_ROWS = 3000


@pytest.fixture(scope="session")
def demo(spark, tmp_path_factory):
    """The shipped demo job (conf/) on 3,000 generated rows, run once for the session.

    Returns (config, summary, generate result, input rows by event id, masking seed, keys)."""
    import csv
    import shutil

    from helpers import Secret, key_ring

    from demo.generate import generate
    from strm_spark.config.load import load_job_config
    from strm_spark.crypto.masking import new_secret_file
    from strm_spark.pipeline.run import run_job

    root = tmp_path_factory.mktemp("demo")
    shutil.copytree(REPO / "conf", root / "conf")
    gen = generate(
        str(root / "out/demo/input/clickstream.csv"), rows=DEMO_ROWS, seed=7, invalid_fraction=0.01
    )
    new_secret_file(root / "out/demo/secrets/mask-seed")
    config = load_job_config(root / "conf" / "demo.yaml")
    summary = run_job(spark, config)
    with open(gen.path, newline="", encoding="utf-8") as fh:
        rows = {r["event_id"]: r for r in csv.DictReader(fh) if r.get(None) is None}
    seed = Secret((root / "out/demo/secrets/mask-seed").read_bytes().strip())
    return config, summary, gen, rows, seed, key_ring(spark, config.key_store)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel --no-deps` of a copy of the repo (the build leaves build/ and egg-info behind),
    built once for the tests that install or inspect it."""
    import shutil
    import subprocess

    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv*",
            "out",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            "spark-warehouse",
            "metastore_db",
        ),
    )
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "dist")]
    proc = subprocess.run([*build, str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    wheels = list((tmp / "dist").glob("strm_spark-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]
