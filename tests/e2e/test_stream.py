"""`strm-spark stream`: file, Kafka and Delta sources as Structured Streaming queries, exactly
once under SIGKILL, beside a batch job of the same group, across a broker restart.

One real Kafka broker (Kafka 4.x, KRaft, 127.0.0.1) serves the module; each test has its own
topic. Streams the CLI runs have their own JVM; the rest run on the suite's session.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import UCI_CSV, require_shared
from helpers import cli_process, delta_commits, job_doc, key_ring, kill_all_when, strm_cli
from kafka_broker import KafkaBroker, produce
from pyspark.sql import functions as F

from strm_spark.cli.main import main
from strm_spark.config.load import parse_job_config
from strm_spark.errors import DataError, UsageError
from strm_spark.pipeline.run import run_job
from strm_spark.pipeline.stream import StreamOptions, run_stream


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    kafka = KafkaBroker(tmp_path_factory.mktemp("kafka")).start()
    yield kafka
    kafka.stop()


def _lines() -> list[str]:
    require_shared()
    return UCI_CSV.read_text(encoding="utf-8").splitlines()


def _write(folder: Path, name: str, lines: list[str], start: int, count: int, extra=()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [*lines[1 + start : 1 + start + count], *extra]
    (folder / name).write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")


def _events(lines: list[str], start: int, count: int) -> list[str]:
    """UCI rows as JSON events of the contract's types."""
    events = []
    for r in csv.DictReader([lines[0], *lines[1 + start : 1 + start + count]]):
        r["Quantity"] = int(r["Quantity"])
        events.append(json.dumps({k: v if v != "" else None for k, v in r.items()}))
    return events


def _kafka_doc(bootstrap: str, topic: str, out: Path, **kafka) -> dict:
    doc = job_doc("unused", out)
    doc["source"] = {
        "format": "kafka",
        "kafka": {"bootstrap_servers": bootstrap, "topic": topic, **kafka},
    }
    return doc


def _config(doc: dict, where: Path):
    return parse_job_config(doc, "job.yaml", where)


def _table(spark, path: Path):
    return spark.read.format("delta").load(str(path))


def _keys_unique(spark, keystore: Path) -> None:
    keys = _table(spark, keystore / "keys")
    assert keys.groupBy("groupId", "keyHash", "day").count().where("count > 1").count() == 0


def _expected(lines: list[str], start: int, count: int) -> Counter:
    """The (invoice, stock code, date, quantity) of UCI rows [start, start + count)."""
    return Counter(
        (r["InvoiceNo"], r["StockCode"], r["InvoiceDate"], r["Quantity"])
        for r in csv.DictReader([lines[0], *lines[1 + start : 1 + start + count]])
    )


def _invoices(df) -> Counter:
    return Counter(
        (r["InvoiceNo"], r["StockCode"], r["InvoiceDate"], str(r["Quantity"]))
        for r in df.select("InvoiceNo", "StockCode", "InvoiceDate", "Quantity").collect()
    )


# ---------------------------------------------------------------- files


def test_file_stream_is_the_batch_job_in_micro_batches(spark, tmp_path):
    lines = _lines()
    src = tmp_path / "in"
    _write(src, "a.csv", lines, 0, 100)
    _write(src, "b.csv", lines, 100, 100, extra=["536999,X,BAD DATE,1,not a date,1.0,12345,UK"])
    _write(src, "c.csv", lines, 200, 100)
    (src / "_SUCCESS").write_text("")
    config = _config(job_doc(src, tmp_path / "stream"), tmp_path)
    first = run_stream(spark, config, StreamOptions(max_files_per_trigger=2))
    assert first.micro_batches == 2 and first.rows_read == 301 and first.rows_rejected == 1
    assert "micro-batches     2" in first.render()
    runs = _table(spark, tmp_path / "stream" / "_runs" / "runs")
    assert sorted(r["runId"] for r in runs.collect()) == [
        f"{first.stream_id}-0",
        f"{first.stream_id}-1",
    ]

    # The batch job over the same files gives the same rows, rejected rows included.
    batch = run_job(spark, _config(job_doc(src, tmp_path / "batch"), tmp_path))
    assert batch.rows_read == 301
    for name in ("derived/d0", "encrypted"):
        stream_rows = _table(spark, tmp_path / "stream" / name).drop("strmMeta", "CustomerID")
        batch_rows = _table(spark, tmp_path / "batch" / name).drop("strmMeta", "CustomerID")
        assert _invoices(stream_rows) == _invoices(batch_rows)
    rejected = [
        _table(spark, tmp_path / out / "rejected")
        .select("rejectReasons", F.element_at(F.split("sourceFile", "/"), -1), "rowNumber")
        .collect()
        for out in ("stream", "batch")
    ]
    assert rejected[0] == rejected[1] and rejected[0][0]["rowNumber"] == 101

    idle = run_stream(spark, config)
    assert idle.stream_id == first.stream_id
    assert idle.micro_batches == 0 and "no micro-batch ran" in idle.render()
    assert _table(spark, tmp_path / "stream" / "encrypted").count() == 300
    _keys_unique(spark, tmp_path / "stream" / "keystore")


def test_checkpoint_of_another_job_or_query_is_refused(spark, tmp_path, capsys):
    lines = _lines()
    src = tmp_path / "in"
    _write(src, "a.csv", lines, 0, 20)
    doc = job_doc(src, tmp_path / "a")
    doc["outputs"]["checkpoint"] = str(tmp_path / "ckpt")
    run_stream(spark, _config(doc, tmp_path))
    other = job_doc(src, tmp_path / "b", name="other_job")
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    # The CLI in this process (its session is this one): exit 2, nothing written.
    checkpoint = str(tmp_path / "ckpt")
    assert main(["stream", str(tmp_path / "other.yaml"), "--checkpoint", checkpoint]) == 2
    assert "belongs to job test_job, not other_job" in capsys.readouterr().err
    assert not (tmp_path / "b" / "encrypted").exists()
    # A folder with a checkpoint strm-spark did not write: another query's.
    query = spark.readStream.format("rate").load().writeStream.format("noop")
    query.option("checkpointLocation", str(tmp_path / "foreign")).start().stop()
    with pytest.raises(UsageError, match="another streaming query's checkpoint"):
        run_stream(spark, _config(other, tmp_path).with_checkpoint(str(tmp_path / "foreign")))
    # A micro-batch's own error stops the query and is raised as itself, before any commit.
    _write(src, "bad.csv", lines, 20, 5, extra=["536999,X,BAD DATE,1,not a date,1.0,1,UK"])
    strict = _config({**job_doc(src, tmp_path / "c"), "max_rejected_fraction": 0.01}, tmp_path)
    with pytest.raises(DataError, match=r"1 of 26 rows rejected") as err:
        run_stream(spark, strict)
    assert "536999" not in str(err.value) and not (tmp_path / "c" / "encrypted").exists()


# ---------------------------------------------------------------- Kafka


def test_kafka_stream_by_the_cli_with_malformed_events_and_privacy_streams(spark, broker, tmp_path):
    lines = _lines()
    good = _events(lines, 0, 200)
    produce(spark, broker.bootstrap, "events", [*good[:100], "not json", None, '{"Quantity": "x"}'])
    produce(spark, broker.bootstrap, "events", good[100:])
    out = tmp_path / "out"
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(_kafka_doc(broker.bootstrap, "events", out)))
    done = strm_cli("stream", "job.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "strm-spark stream summary: job test_job" in done.stdout
    assert "rows read         203" in done.stdout and "rows rejected     3" in done.stdout
    assert "trigger           available now" in done.stdout

    enc = _table(spark, out / "encrypted")
    assert enc.count() == 200
    assert _invoices(enc) == _expected(lines, 0, 200)
    rejected = _table(spark, out / "rejected")
    got = {
        (r["sourceFile"], r["rowNumber"], r["rejectReasons"][0])
        for r in rejected.select("sourceFile", "rowNumber", "rejectReasons").collect()
    }
    # Each malformed record is found by its topic, partition and offset.
    offsets = {
        (f"kafka:events:{r['partition']}", r["offset"])
        for r in spark.read.format("kafka")
        .option("kafka.bootstrap.servers", broker.bootstrap)
        .option("subscribe", "events")
        .option("startingOffsets", "earliest")
        .load()
        .where(F.col("value").isNull() | ~F.col("value").cast("string").startswith('{"InvoiceNo'))
        .collect()
    }
    assert {(f, n) for f, n, _ in got} == offsets
    assert {reason for *_, reason in got} == {
        "malformed record (not valid JSON)",
        "malformed record (JSON that is not an object of the contract's types: a value of the "
        "wrong JSON type)",
    }
    assert "not json" not in {str(r["rawRecord"]) for r in rejected.collect()}

    # Privacy streams: the derived table is a stream a downstream query can read (here another
    # strm-spark stream, whose source is that Delta table), and the decrypting view over the
    # encrypted table gives the same rows.
    downstream = job_doc(out / "derived" / "d0", tmp_path / "downstream", fmt="delta")
    read = run_stream(spark, _config({**downstream, "name": "downstream"}, tmp_path))
    assert read.rows_read == 200 and read.rows_rejected == 0
    assert _invoices(_table(spark, tmp_path / "downstream" / "encrypted")) == _invoices(enc)
    from strm_spark.sql.views import register_job_views

    names = register_job_views(
        spark, _config(_kafka_doc(broker.bootstrap, "events", out), tmp_path)
    )
    view = names[1]  # the derived output's decrypting view
    derived = _table(spark, out / "derived" / "d0").drop("strmMeta")
    assert spark.table(view).drop("strmMeta").exceptAll(derived).count() == 0
    assert derived.where(F.col("CustomerID").isNotNull()).count() > 0

    # Only new events the next time.
    produce(spark, broker.bootstrap, "events", _events(lines, 200, 30))
    again = run_stream(spark, _config(_kafka_doc(broker.bootstrap, "events", out), tmp_path))
    assert again.rows_read == 30 and again.micro_batches == 1
    assert _table(spark, out / "encrypted").count() == 230
    _keys_unique(spark, out / "keystore")


def test_kafka_timestamp_only_when_the_config_says_so(spark, broker, tmp_path):
    lines = _lines()
    events = [json.loads(e) for e in _events(lines, 0, 10)]
    for e in events[:4]:
        e["InvoiceDate"] = None
    produce(spark, broker.bootstrap, "no-time", [json.dumps(e) for e in events])
    strict = run_stream(
        spark, _config(_kafka_doc(broker.bootstrap, "no-time", tmp_path / "a"), tmp_path)
    )
    assert strict.rows_rejected == 4
    fallback = _config(
        _kafka_doc(broker.bootstrap, "no-time", tmp_path / "b", timestamp_fallback=True), tmp_path
    )
    done = run_stream(spark, fallback)
    assert done.rows_rejected == 0 and done.rows_encrypted == 10
    today = time.strftime("%Y-%m-%d", time.gmtime())
    days = [r[0] for r in _table(spark, tmp_path / "b" / "encrypted").select("strmDay").collect()]
    assert sorted(str(d) for d in days).count(today) == 4


def test_forgotten_subjects_earlier_events_on_the_stream_are_dropped(spark, broker, tmp_path):
    from strm_spark.subjects.erasure import forget

    lines = _lines()
    events = _events(lines, 0, 60)
    produce(spark, broker.bootstrap, "forget", events[:40])
    config = _config(_kafka_doc(broker.bootstrap, "forget", tmp_path / "out"), tmp_path)
    run_stream(spark, config)
    subject = next(json.loads(e)["CustomerID"] for e in events if json.loads(e)["CustomerID"])
    forget(spark, config, [subject])

    def of_subject(e: str) -> bool:
        return json.loads(e)["CustomerID"] == subject

    theirs = [e for e in events[:40] if of_subject(e)]  # their earlier events, arriving again
    # ... and one that does not parse, naming them: dropped too, not kept as a rejected row
    late = [*theirs, f'{{"InvoiceNo": "536365", "CustomerID": "{subject}", "Country": broken']
    new = [e for e in events[40:] if not of_subject(e)]
    produce(spark, broker.bootstrap, "forget", [*late, *new])
    again = run_stream(spark, config)
    assert again.rows_tombstoned == len(late) > 1 and "rows dropped" in again.render()
    assert again.rows_rejected == 0
    # Their earlier rows stay encrypted under destroyed keys; none of their events came back.
    assert _table(spark, tmp_path / "out" / "encrypted").count() == 40 + len(new)
    derived = _table(spark, tmp_path / "out" / "derived" / "d0")
    assert derived.where(F.col("CustomerID") == subject).count() == 0
    assert derived.count() == 40 - len(theirs) + len(new)


# ---------------------------------------------------------------- exactly once


def test_sigkill_at_each_step_of_a_micro_batch_then_restart_is_exactly_once(spark, tmp_path):
    lines = _lines()
    # After: the new keys' commit (table creation is commit 0), the encrypted table's commit,
    # the derived table's commit, and the table of runs' commit (the micro-batch's last write:
    # the checkpoint's commit of the batch has not been written). Each its own job and folder;
    # the four processes run at once.
    points = {
        "keys": ("keystore/keys", 2),
        "encrypted": ("encrypted", 2),
        "derived": ("derived/d0", 2),
        "checkpoint": ("_runs/runs", 1),
    }
    runs = []
    for i, (name, (table, commits)) in enumerate(points.items()):
        src, out = tmp_path / name / "in", tmp_path / name / "out"
        _write(src, "part-0.csv", lines, 150 * i, 150)
        (tmp_path / name / "job.yaml").write_text(yaml.safe_dump(job_doc(src, out)))
        proc = cli_process("stream", "job.yaml", cwd=tmp_path / name)
        runs.append((name, src, out, proc, out / table, commits))
    checkpoint_point = runs[-1][4]

    def frozen(point) -> None:  # stopped right after its runs commit: the checkpoint's not yet
        if point[1] == checkpoint_point:
            assert not (point[1].parent / "checkpoint" / "commits" / "0").exists()

    kill_all_when([(proc, table, commits) for *_, proc, table, commits in runs], frozen=frozen)
    for i, (name, src, out, *_) in enumerate(runs):
        config = _config(job_doc(src, out), tmp_path / name)
        again = run_stream(spark, config)
        assert again.micro_batches == 1, name  # the killed micro-batch, replayed
        expected = _expected(lines, 150 * i, 150)
        for table in ("encrypted", "derived/d0"):
            assert _invoices(_table(spark, out / table)) == expected, (name, table)
        runs_table = _table(spark, out / "_runs" / "runs")
        assert runs_table.count() == 1, name
        _keys_unique(spark, out / "keystore")
        ring = key_ring(spark, str(out / "keystore"))
        links = {
            r[0] for r in _table(spark, out / "encrypted").select("strmMeta.keyLink").collect()
        }
        assert links <= set(ring)
        subjects = _table(spark, out / "data_subjects")
        assert subjects.groupBy("dataSubject", "keyLink").count().where("count > 1").count() == 0
        assert {r[0] for r in subjects.select("keyLink").collect()} <= links


def test_a_stream_and_a_batch_job_of_one_group_at_once_share_one_key_per_day(spark, tmp_path):
    lines = _lines()
    shared = tmp_path / "keystore"
    procs = []
    for name, start, command in (("stream_job", 0, "stream"), ("batch_job", 200, "run")):
        src = tmp_path / name / "in"
        _write(src, "part.csv", lines, start, 400)  # rows 200..399 in both
        doc = job_doc(src, tmp_path / name / "out", name=name)
        doc["keys"]["store"] = str(shared)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(doc))
        procs.append(cli_process(command, f"{name}.yaml", cwd=tmp_path))
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    _keys_unique(spark, shared)
    ring = key_ring(spark, str(shared))
    links: dict = {}
    for name in ("stream_job", "batch_job"):
        enc = _table(spark, tmp_path / name / "out" / "encrypted")
        for r in (
            enc.where(F.col("CustomerID").isNotNull())
            .select("InvoiceNo", "StockCode", "strmMeta.keyLink")
            .collect()
        ):
            assert r["keyLink"] in ring
            links.setdefault((r["InvoiceNo"], r["StockCode"]), set()).add(r["keyLink"])
    assert links and all(len(v) == 1 for v in links.values())


def test_broker_restart_in_the_middle_of_a_stream_loses_nothing(spark, broker, tmp_path):
    lines = _lines()
    out = tmp_path / "out"
    config = _config(_kafka_doc(broker.bootstrap, "restart", out), tmp_path)
    produce(spark, broker.bootstrap, "restart", _events(lines, 0, 50))
    ended: dict = {}

    def stream() -> None:  # a long-running query, in a thread of this process
        try:
            options = StreamOptions(available_now=False, interval="2s", timeout_s=240)
            ended["summary"] = run_stream(spark, config, options)
        except Exception as exc:
            ended["error"] = exc

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        deadline = time.monotonic() + 180
        while delta_commits(out / "encrypted") < 2 and time.monotonic() < deadline:
            assert thread.is_alive(), ended
            time.sleep(0.5)
        assert delta_commits(out / "encrypted") >= 2, "the stream wrote nothing"
        broker.restart()
        produce(spark, broker.bootstrap, "restart", _events(lines, 50, 50))
        while thread.is_alive() and time.monotonic() < deadline:
            if _table(spark, out / "encrypted").count() >= 100:
                break
            time.sleep(1)
    finally:
        for query in spark.streams.active:
            query.stop()
        thread.join(120)
    if "error" in ended:  # failed: a strm-spark error or Spark's, then a resume
        run_stream(spark, config)
    assert _invoices(_table(spark, out / "encrypted")) == _expected(lines, 0, 100)


def test_an_incremental_job_is_handed_over_to_the_stream_without_reprocessing(
    spark, tmp_path, capsys
):
    lines = _lines()
    src, out = tmp_path / "in", tmp_path / "out"
    _write(src, "a b.csv", lines, 0, 60)  # a name Spark writes URL-encoded in its metadata
    doc = job_doc(src, out)
    doc["source"]["incremental"] = True
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    config = _config(doc, tmp_path)
    assert run_job(spark, config).rows_read == 60
    _write(src, "b.csv", lines, 60, 40)
    streamed = run_stream(spark, config)
    assert streamed.rows_read == 40 and _table(spark, out / "encrypted").count() == 100
    assert _invoices(_table(spark, out / "encrypted")) == _expected(lines, 0, 100)
    assert main(["run", str(tmp_path / "job.yaml")]) == 2
    assert "runs as a stream now" in capsys.readouterr().err
