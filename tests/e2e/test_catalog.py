"""Tables by name on a real metastore: Spark's Hive metastore on embedded Derby (pyspark ships
both), a warehouse and metastore folder of the module's own. The demo job is run by the CLI with
every output a named table in its own schema and the key store a schema; then an incremental
rerun, `subjects export`, a decrypting view through `sql`, and `forget`, after which no file of
the warehouse holds the subject. The same job then runs over a local Spark Connect server whose
session uses a metastore of its own.

Each command is a `strm-spark` process of its own (embedded Derby admits one JVM at a time);
one module-scoped run serves every check."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import subjects_data as sd
import yaml
from conftest import REPO, TEST_CONF
from connect_server import connect_server
from helpers import strm_cli

from demo.generate import generate
from strm_spark.crypto.masking import new_secret_file

KEY_STORE_AFTER_FORGET = ["audit", "audit_keys", "hash_keys", "keys", "tombstones"]
SCHEMAS = ("events", "quarantine", "analytics", "marketing", "subjects", "keystore")


def hive_conf(root: Path) -> dict[str, str]:
    """A Hive metastore on embedded Derby in `root`, and its warehouse."""
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(root / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true"
        ),
    }


def _cli(root: Path, *args: str, remote: str | None = None) -> subprocess.CompletedProcess:
    session = ["--remote", remote] if remote else ["--master", "local[2]"]
    if not remote:
        for key, value in {**hive_conf(root), **TEST_CONF}.items():
            session += ["--conf", f"{key}={value}"]
    proc = strm_cli(*args, *session, cwd=root)  # Derby's log lands in `root`
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


_INSPECT = """
import json, sys
from strm_spark.session import get_spark
spark = get_spark("inspect", master="local[1]", extra_conf=json.loads(sys.argv[1]))
out = [[r.asDict() for r in spark.sql(q).collect()] for q in sys.argv[2:]]
print("ROWS " + json.dumps(out, default=str))
"""


def _inspect(root: Path, *queries: str) -> list[list[dict]]:
    """Each query's rows, from one session on the module's metastore (one JVM for them all)."""
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
    env.pop("SPARK_REMOTE", None)
    conf = json.dumps({**hive_conf(root), **TEST_CONF})
    proc = subprocess.run(
        [sys.executable, "-c", _INSPECT, conf, *queries],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ROWS "))
    return json.loads(line[len("ROWS ") :])


def _named_job(root: Path) -> Path:
    """conf/demo.yaml with a folder source (incremental) and every output a named table."""
    doc = yaml.safe_load((REPO / "conf" / "demo.yaml").read_text(encoding="utf-8"))
    shutil.copy(REPO / "conf" / "demo_contract.yaml", root / "demo_contract.yaml")
    doc["source"] = {"path": "input", "format": "csv", "options": {"header": True}}
    doc["source"]["incremental"] = True
    doc["keys"]["store"] = {"schema": "keystore"}
    doc["masking"] = {"seed_file": "mask-seed"}
    doc["outputs"] = {
        "encrypted": {"table": "spark_catalog.events.clickstream"},
        "data_subjects": {"table": "subjects.data_subjects"},
        "rejected": {"table": "quarantine.clickstream_rejected"},
        "derived": [
            {**d, "table": f"{d['name']}.clickstream", "path": None}
            for d in doc["outputs"]["derived"]
        ],
    }
    for d in doc["outputs"]["derived"]:
        del d["path"]
    (root / "job.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return root / "job.yaml"


def _input(root: Path, name: str, seed: int, rows: int) -> dict[str, dict[str, str]]:
    gen = generate(str(root / "input" / name), rows=rows, seed=seed, invalid_fraction=0.01)
    with open(gen.path, newline="", encoding="utf-8") as fh:
        return {r["event_id"]: r for r in csv.DictReader(fh) if r.get(None) is None}


def _sql(root: Path, query: str, remote: str | None = None) -> list[dict[str, str]]:
    """The rows `strm-spark sql` prints (Spark's text table), as dicts of their cells."""
    out = _cli(root, "sql", "job.yaml", "--query", query, remote=remote).stdout
    lines = [line for line in out.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[1:]
    ]


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """The CLI's first run, its incremental rerun and the source rows: (root, rows, runs)."""
    root = tmp_path_factory.mktemp("catalog")
    new_secret_file(root / "mask-seed")
    _named_job(root)
    rows = _input(root, "a.csv", seed=7, rows=400)
    first = _cli(root, "run", "job.yaml")
    rows |= _input(root, "b.csv", seed=8, rows=200)
    second = _cli(root, "run", "job.yaml")
    return root, rows, (first, second)


def test_the_demo_job_writes_every_output_as_a_named_table(named):
    root, rows, (first, second) = named
    assert "rows read         400" in first.stdout, first.stdout
    assert "spark_catalog.events.clickstream" in first.stdout  # outputs shown by name
    assert "rows read         200" in second.stdout  # the rerun read the new file only
    *shown, (counts,) = _inspect(
        root,
        *(f"SHOW TABLES IN {schema}" for schema in SCHEMAS),
        "SELECT (SELECT count(*) FROM events.clickstream) AS enc, "
        "(SELECT count(*) FROM quarantine.clickstream_rejected) AS rej, "
        "(SELECT count(*) FROM events.strm_runs) AS runs",
    )
    tables = {schema: sorted(r["tableName"] for r in rows) for schema, rows in zip(SCHEMAS, shown)}
    assert tables == {
        "events": ["clickstream", "strm_files", "strm_runs"],
        "quarantine": ["clickstream_rejected"],
        "analytics": ["clickstream"],
        "marketing": ["clickstream"],
        "subjects": ["data_subjects"],
        "keystore": ["hash_keys", "keys"],
    }
    # Managed tables: in the warehouse, owner-only like any output folder.
    warehouse = root / "warehouse"
    assert (warehouse / "events.db" / "clickstream" / "_delta_log").is_dir()
    assert not (root / "out").exists()
    modes = {oct(p.stat().st_mode & 0o777) for p in warehouse.rglob("*") if p.is_file()}
    assert modes == {"0o600"}, modes
    assert counts["enc"] + counts["rej"] == 600 and counts["runs"] == 2


def test_export_view_and_forget_on_named_tables(named):
    root, rows, _ = named
    subject = sorted(r["customer_id"] for r in rows.values() if r["customer_id"])[0]
    mine = [r for r in rows.values() if r["customer_id"] == subject]
    _cli(root, "subjects", "export", "job.yaml", subject, "--out", "export")
    manifest = json.loads((root / "export" / "manifest.json").read_text(encoding="utf-8"))
    assert "spark_catalog.events.clickstream" in json.dumps(manifest["tables"])
    assert 0 < manifest["rows"]["encrypted"] <= len(mine)
    exported = [
        json.loads(line)
        for f in manifest["files"]
        for line in (root / "export" / f).read_text(encoding="utf-8").splitlines()
    ]
    assert {r["email"] for r in exported if r.get("email")} <= {r["email"] for r in mine}
    # A decrypting view over the named encrypted table.
    decrypted = _sql(root, "SELECT count(*) AS n FROM analytics WHERE customer_id IS NOT NULL")
    assert int(decrypted[0]["n"]) > 0
    before, _ = sd.scan([root / "warehouse"], {"subject id": subject.encode()})
    assert before.get("subject id"), "the scan must see the subject before the forget"

    report = json.loads(_cli(root, "subjects", "forget", "job.yaml", subject, "--json").stdout)
    assert report["completed"] and report["keys_removed"] > 0
    left, files = _scan_after(root, subject)
    assert files > 20 and not left, left
    (tables,) = _inspect(root, "SHOW TABLES IN keystore")
    assert sorted(r["tableName"] for r in tables) == KEY_STORE_AFTER_FORGET


def _scan_after(root: Path, subject: str):
    return sd.scan([root / "warehouse"], {"subject id": subject.encode()})


def test_the_same_job_over_spark_connect(tmp_path):
    """A Connect server with a Hive metastore of its own runs the named-table job and a query."""
    root = tmp_path
    new_secret_file(root / "mask-seed")
    _named_job(root)
    _input(root, "a.csv", seed=7, rows=200)
    conf = {**TEST_CONF, **hive_conf(root)}
    with connect_server(root / "logs", conf=conf) as url:
        run = _cli(root, "run", "job.yaml", remote=url)
        assert "rows read         200" in run.stdout
        tables = _sql(root, "SHOW TABLES IN keystore", remote=url)
    assert sorted(r["tableName"] for r in tables if r["isTemporary"] == "false") == [
        "hash_keys",
        "keys",
    ]
    assert (root / "warehouse" / "events.db" / "clickstream" / "_delta_log").is_dir()
