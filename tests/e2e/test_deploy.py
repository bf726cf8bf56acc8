"""Deployment: the built wheel, the Databricks bundle, and the batch job under spark-submit on a
real standalone Spark cluster (a master and a worker on 127.0.0.1, started from pyspark's jars).

The cluster's Python is the project venv's packages without the project itself, so the job
only runs if the wheel shipped with `--py-files` reaches the driver and the executors.
"""

from __future__ import annotations

import argparse
import configparser
import csv
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import REPO, UCI_CSV, require_shared
from helpers import job_doc, key_ring

from strm_spark import jvm, session
from strm_spark.cli import entrypoints
from strm_spark.cli.main import build_parser
from strm_spark.crypto import cells as crypto
from strm_spark.errors import CommandFailed
from strm_spark.session import delta_jars

SPARK_HOME = Path(importlib.util.find_spec("pyspark").origin).parent
ENTRY_POINTS = {
    "batch_job": "run",
    "stream_job": "stream",
    "strm_job": "run-strm",
    "subjects": "subjects",
}
ROWS = 300
# Short-lived JVMs on a small, shared machine: the client compiler alone warms up far sooner.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m"


# ---------------------------------------------------------------- the wheel and a bare Python


def _wheel_entry_points(whl: Path) -> dict[str, dict[str, str]]:
    with zipfile.ZipFile(whl) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # entry point names are case-sensitive
        parser.read_string(zf.read(name).decode("utf-8"))
    return {group: dict(parser[group]) for group in parser.sections()}


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A venv that sees the project venv's packages (pyspark, tink, pandas, pyarrow, ...) but
    not its editable strm_spark: a cluster node where only the dependencies are installed."""
    root = tmp_path_factory.mktemp("pyenv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    python = root / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = subprocess.run(
        [python, "-c", purelib], capture_output=True, text=True, check=True
    ).stdout.strip()
    # A path line in a .pth adds the directory without running its own .pth files, so the
    # editable install's import hook stays out.
    Path(site, "strm_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = (
        "import importlib.util as u\n"
        "import pyspark, tink, pandas, pyarrow, yaml, mmh3, delta\n"
        "print(u.find_spec('strm_spark') is None)"
    )
    proc = subprocess.run(
        [python, "-c", probe],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=root,
        timeout=120,
    )  # not the repo: '' is on sys.path
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "True", "the bare Python can import strm_spark without the wheel"
    return python


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYSPARK_", "SPARK_", "STRM_SPARK_")) and k != "PYTHONPATH"
    }
    env.update(extra)
    return env


# ---------------------------------------------------------------- entry points, in process


def test_wheel_has_console_script_and_job_entry_points(wheel):
    eps = _wheel_entry_points(wheel)
    assert eps["console_scripts"]["strm-spark"] == "strm_spark.cli.main:main"
    assert eps["strm_spark"] == {
        name: f"strm_spark.cli.entrypoints:{fn}"
        for name, fn in [
            ("batch_job", "batch_job_main"),
            ("stream_job", "stream_job_main"),
            ("strm_job", "strm_job_main"),
            ("subjects", "subjects_main"),
        ]
    }
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "strm_spark/cli/entrypoints.py" in names and "strm_spark/cli/__main__.py" in names
    # The demo generator is the repo's, not the runtime's.
    assert not [n for n in names if n.startswith("demo/") or n.endswith("generate.py")]


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_entry_points_forward_argv_to_the_cli(entry_point, monkeypatch):
    calls: list[list[str]] = []

    def fake_main(argv):
        calls.append(list(argv))
        return 0

    monkeypatch.setattr("strm_spark.cli.main.main", fake_main)
    monkeypatch.setattr(sys, "argv", ["python", "conf/job.yaml", "--flag", "x"])  # wheel task
    fn = getattr(entrypoints, f"{entry_point}_main")
    assert fn() == 0
    assert fn(["a", "b"]) == 0
    command = ENTRY_POINTS[entry_point]
    assert calls == [[command, "conf/job.yaml", "--flag", "x"], [command, "a", "b"]]


def test_entry_points_fail_loudly(tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "missing.yaml")
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    with pytest.raises(SystemExit) as exc:
        entrypoints.batch_job_main([missing])
    assert exc.value.code == 2 and "missing.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a usage error from argparse
        entrypoints.strm_job_main(["--no-such-option"])
    assert exc.value.code == 2
    # A Databricks wheel task ignores return values and exit codes of a returned call.
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "17.3")
    with pytest.raises(CommandFailed, match="strm-spark run failed with exit code 2"):
        entrypoints._finish("run", 2)
    assert entrypoints._finish("run", 0) == 0


def test_the_udf_jar_bundles_its_tink_relocated_and_ships_in_the_wheel(wheel):
    # The jar brings Tink, protobuf-java and gson under io.strmspark.shaded: nothing of them
    # under their own names, which the runtime's copies (Spark 4.0: Tink 1.16; no
    # protobuf-java in pyspark) would shadow or clash with. Spark's own classes stay out.
    with zipfile.ZipFile(session.UDF_JAR) as zf:
        names = zf.namelist()
    ours = [n for n in names if n.startswith("io/strmspark/") and "/shaded/" not in n]
    assert {f"{cls.replace('.', '/')}.class" for cls, _ in jvm.FUNCTIONS.values()} <= set(ours)
    # The local file system's classes too; Hadoop's own stay with the runtime ("org/" below).
    assert {f"{cls.replace('.', '/')}.class" for cls in session.LOCAL_FS_CONF.values()} <= set(ours)
    shaded = "io/strmspark/shaded/com/google/"
    for cls in ("crypto/tink/KeysetHandle", "protobuf/MessageOrBuilder", "gson/JsonParser"):
        assert f"{shaded}{cls}.class" in names, cls
    strays = [n for n in names if n.endswith(".class") and not n.startswith("io/strmspark/")]
    assert not strays, strays[:5]
    assert not [n for n in names if n.startswith(("com/", "google/", "org/"))]
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("strm_spark/jars/strm-spark-udf.jar") == session.UDF_JAR.read_bytes()


# ---------------------------------------------------------------- the Databricks bundle


def _bundle() -> dict:
    return yaml.safe_load((REPO / "databricks.yml").read_text(encoding="utf-8"))


def _wheel_tasks(bundle: dict) -> list[tuple[str, dict, dict]]:
    return [
        (key, job, task)
        for key, job in bundle["resources"]["jobs"].items()
        for task in job["tasks"]
        if "python_wheel_task" in task
    ]


def _task_libraries(job: dict, task: dict) -> tuple[list[dict], dict | None]:
    """The task's libraries and its compute: a job cluster's conf, or None for a serverless
    environment (whose dependencies are its libraries)."""
    if "environment_key" in task:
        env = next(
            e for e in job["environments"] if e["environment_key"] == task["environment_key"]
        )
        assert "job_cluster_key" not in task and "libraries" not in task
        return [
            {"whl": d} if d.endswith(".whl") else {"pypi": d} for d in env["spec"]["dependencies"]
        ], None
    cluster = next(
        c["new_cluster"]
        for c in job["job_clusters"]
        if c["job_cluster_key"] == task["job_cluster_key"]
    )
    return task["libraries"], cluster


def test_bundle_tasks_call_entry_points_of_the_wheel(wheel, bare_python):
    bundle = _bundle()
    tasks = _wheel_tasks(bundle)
    assert {t["python_wheel_task"]["entry_point"] for _, _, t in tasks} >= {"batch_job", "subjects"}
    names = {name for group in _wheel_entry_points(wheel).values() for name in group}
    artifacts = bundle["artifacts"]
    assert (
        artifacts["strm_spark"]["type"] == "whl"
        and "--no-deps -w dist" in artifacts["strm_spark"]["build"]
    )
    assert artifacts["udf_jar"]["type"] == "jar" and artifacts["udf_jar"]["build"] == "make udf"
    built_jars = {f["source"] for f in artifacts["udf_jar"]["files"]}
    variables = {k: str(v.get("default")) for k, v in bundle["variables"].items()}
    computes = set()
    for key, job, task in tasks:
        wt = task["python_wheel_task"]
        assert wt["package_name"] == "strm_spark", key
        assert wt["entry_point"] in names, f"{key}: no entry point {wt['entry_point']!r} in wheel"
        libraries, cluster = _task_libraries(job, task)
        wheels = [lib["whl"] for lib in libraries if "whl" in lib]
        assert wheels == ["./dist/*.whl"] and fnmatch.fnmatch(f"./dist/{wheel.name}", wheels[0]), (
            key
        )
        jars = [lib["jar"] for lib in libraries if "jar" in lib]
        if cluster is None:  # serverless compute takes no jar libraries
            computes.add("serverless")
            assert not jars, key
            continue
        # Job compute: every jar is a built artifact holding the UDF classes strm-spark registers.
        assert jars and set(jars) <= built_jars, f"{key}: {jars} are not built by the bundle"
        for jar in jars:
            with zipfile.ZipFile(REPO / jar) as zf:
                classes = set(zf.namelist())
            for cls, _ in jvm.FUNCTIONS.values():
                assert cls.replace(".", "/") + ".class" in classes, f"{jar} lacks {cls}"
        mode = cluster["data_security_mode"]
        assert mode == "${var.access_mode}", key
        computes.add(variables["access_mode"])
        # Secrets are references resolved by Databricks, never values.
        for name, value in cluster.get("spark_env_vars", {}).items():
            assert re.fullmatch(r"\{\{secrets/(\$\{var\.\w+\}|[\w.\-]+)/[\w.\-]+\}\}", value), name
    # Standard access mode by default, and a serverless variant of every job compute job.
    assert computes == {"USER_ISOLATION", "serverless"}
    assert "SINGLE_USER" in bundle["variables"]["access_mode"]["description"]
    by_compute = {}
    for _key, _job, task in tasks:
        serverless = "environment_key" in task
        by_compute.setdefault(task["python_wheel_task"]["entry_point"], set()).add(serverless)
    assert all(v == {True, False} for v in by_compute.values()), by_compute
    # Resolve each entry point the way a wheel task does (by name, in the wheel's metadata)
    # with the bare Python, so it comes from the wheel.
    probe = (
        "import sys; from importlib import metadata\n"
        "wheel, names = sys.argv[1], sys.argv[2:]\n"
        "eps = {ep.name: ep for ep in metadata.distribution('strm_spark').entry_points}\n"
        "for name in names:\n"
        "    fn = eps[name].load(); assert callable(fn), name\n"
        "    assert sys.modules[fn.__module__].__file__.startswith(wheel), name\n"
        "print('ok')\n"
    )
    env = _clean_env(PYTHONPATH=str(wheel))
    used = sorted({t["python_wheel_task"]["entry_point"] for _, _, t in tasks})
    proc = subprocess.run(
        [bare_python, "-c", probe, str(wheel), *used],
        capture_output=True,
        text=True,
        env=env,
        cwd=wheel.parent,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_bundle_parameters_are_consistent():
    bundle = _bundle()
    variables = set(bundle.get("variables", {}))
    text = (REPO / "databricks.yml").read_text(encoding="utf-8")
    assert set(re.findall(r"\$\{var\.(\w+)\}", text)) <= variables
    subcommands = {
        name
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    for key, job, task in _wheel_tasks(bundle):
        defined = {p["name"]: str(p["default"]) for p in job.get("parameters", [])}
        params = task["python_wheel_task"]["parameters"]
        used = {m for p in params for m in re.findall(r"\{\{job\.parameters\.(\w+)\}\}", p)}
        assert used == set(defined), f"{key}: task uses {sorted(used)}, job has {sorted(defined)}"
        # The rendered argument list must parse with the CLI command the entry point runs.
        command = ENTRY_POINTS[task["python_wheel_task"]["entry_point"]]
        assert command in subcommands, (
            f"{key}: entry point runs `strm-spark {command}`, which does not exist"
        )
        argv = [
            re.sub(r"\{\{job\.parameters\.(\w+)\}\}", lambda m: defined[m.group(1)], p)
            for p in params
        ]
        try:
            build_parser().parse_args([command, *argv])
        except SystemExit:
            pytest.fail(
                f"{key}: the task's parameters {argv} are not valid for "
                f"`strm-spark {command}`: align databricks.yml with the CLI"
            )


# ---------------------------------------------------------------- a standalone cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _children(pids: set[int]) -> set[int]:
    """Every live descendant of `pids` (from /proc), so none outlives the test."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), set(pids)
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left, descendants included."""
    tracked = {p.pid for p in procs} | _children({p.pid for p in procs})
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        for pid in tracked:
            if sig == signal.SIGKILL and _alive(pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(pid) for pid in tracked):
            for p in procs:
                p.poll()
            time.sleep(0.2)
        if not any(_alive(pid) for pid in tracked):
            break
    for p in procs:
        p.poll()
    left = [pid for pid in tracked if _alive(pid)]
    assert not left, f"cluster processes left running: {left}"


@contextmanager
def standalone_cluster(root: Path, env: dict[str, str]) -> Iterator[str]:
    """A master and one worker (1 core, 1g) on 127.0.0.1; yields the master URL."""
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    (root / "work").mkdir()
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> Path:
        log = root / f"{name}.log"
        with open(log, "wb") as fh:
            procs.append(
                subprocess.Popen(
                    [spark_class, *args],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=root,
                    start_new_session=True,
                )
            )
        return log

    try:
        master_log = start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        )
        url = f"spark://127.0.0.1:{port}"
        worker_log = start(
            "worker",
            "org.apache.spark.deploy.worker.Worker",
            url,
            "--cores",
            "1",
            "--memory",
            "1g",
            "--host",
            "127.0.0.1",
            "--webui-port",
            str(worker_ui),
            "--work-dir",
            str(root / "work"),
        )
        deadline = time.monotonic() + 180
        while not _worker_alive(ui):
            for p, log in zip(procs, (master_log, worker_log)):
                assert p.poll() is None, f"{log.name} exited ({p.returncode}):\n{_tail(log)}"
            assert time.monotonic() < deadline, (
                f"no worker registered with the master in 180 s\nmaster:\n{_tail(master_log)}\n"
                f"worker:\n{_tail(worker_log)}"
            )
            time.sleep(1)
        yield url
    finally:
        _stop(procs)


def _worker_alive(ui_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as resp:
            state = json.load(resp)
    except (OSError, ValueError):
        return False
    return any(w.get("state") == "ALIVE" for w in state.get("workers", []))


def _submit(
    argv: list[str], env: dict[str, str], cwd: Path
) -> tuple[subprocess.Popen, str, str, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        _stop([proc])
        stdout, stderr = proc.communicate()
        pytest.fail(f"spark-submit did not finish in 480 s\n{stderr[-4000:]}")
    finally:
        _stop([proc])
    return proc, stdout, stderr, time.monotonic() - started


def test_batch_job_on_a_standalone_cluster(spark, wheel, bare_python, tmp_path):
    require_shared()
    jars = delta_jars()
    if not jars:
        pytest.skip("Delta's jars are not in ~/.m2 (make jars)")
    lines = UCI_CSV.read_text(encoding="utf-8").splitlines()[: ROWS + 1]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job_doc(tmp_path / "in.csv", out)))
    # Spark only puts .zip/.egg/.jar py-files on the executors' path; a wheel is a zip.
    shipped = tmp_path / (wheel.stem + ".zip")
    shutil.copyfile(wheel, shipped)
    (tmp_path / "conf").mkdir()
    env = _clean_env(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_CONF_DIR=str(tmp_path / "conf"),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOCAL_DIRS=str(tmp_path / "local"),
        SPARK_DAEMON_JAVA_OPTS=QUICK_JVM,
        PYSPARK_PYTHON=str(bare_python),
        PYSPARK_DRIVER_PYTHON=str(bare_python),
    )

    with standalone_cluster(tmp_path, env) as master:
        submit = [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--master",
            master,
            "--deploy-mode",
            "client",
            # The UDF jar as a cluster gets it: --jars (the copy inside the wheel is not on
            # the JVM's class path).
            "--jars",
            ",".join([*jars, str(session.UDF_JAR)]),
            "--py-files",
            str(shipped),
            "--conf",
            f"spark.sql.extensions={session.DELTA_EXTENSION}",
            "--conf",
            f"spark.sql.catalog.spark_catalog={session.DELTA_CATALOG}",
            "--conf",
            f"spark.pyspark.python={bare_python}",
            "--conf",
            "spark.driver.host=127.0.0.1",
            "--conf",
            "spark.ui.enabled=false",
            "--conf",
            "spark.log.level=WARN",
            "--driver-java-options",
            QUICK_JVM,
            "--conf",
            f"spark.executor.extraJavaOptions={QUICK_JVM}",
            "--conf",
            "spark.executor.memory=1g",
            "--conf",
            "spark.cores.max=1",
            "--conf",
            "spark.sql.shuffle.partitions=2",
            "--conf",
            "spark.databricks.delta.snapshotPartitions=2",
        ]
        proc, stdout, stderr, took = _submit(
            [*submit, str(REPO / "jobs" / "batch_job.py"), str(tmp_path / "job.yaml")],
            env,
            tmp_path,
        )
        # A library user's script under spark-submit: get_spark() keeps the submitted master.
        script = tmp_path / "lib_script.py"
        script.write_text(
            "from strm_spark.session import get_spark\n"
            "spark = get_spark()\n"
            "print('MASTER', spark.sparkContext.master, spark.range(3).count())\n"
        )
        lib, lib_out, lib_err, _ = _submit([*submit, str(script)], env, tmp_path)
    assert lib.returncode == 0 and f"MASTER {master} 3" in lib_out, lib_err[-3000:]

    assert proc.returncode == 0, (
        f"spark-submit exited {proc.returncode} after {took:.0f} s:\n{stderr[-5000:]}"
    )
    assert "strm-spark run summary: job test_job" in stdout
    assert f"rows read         {ROWS}" in stdout and f"rows encrypted    {ROWS}" in stdout, stdout
    assert "encryption        jvm (JVM UDF on the class path)" in stdout, stdout
    # The work ran on the cluster: the worker launched an executor for the application.
    assert list((tmp_path / "work").glob("app-*/*/stderr")), "the worker launched no executor"

    enc = spark.read.format("delta").load(str(out / "encrypted"))
    assert enc.count() == ROWS
    keys = key_ring(spark, str(out / "keystore"))
    assert keys
    rows = enc.select("CustomerID", "strmMeta.keyLink").collect()
    assert {r["keyLink"] for r in rows} <= set(keys), "a row's key link has no key in the key store"
    plain = {row["CustomerID"] for row in csv.DictReader(lines)} - {""}
    decrypted = {
        crypto.decrypt(keys[r["keyLink"]], r["CustomerID"])
        for r in rows
        if r["CustomerID"] is not None
    }
    assert decrypted == plain
    assert not plain & {r["CustomerID"] for r in rows}, "plaintext customer ids in encrypted table"
