"""`make bench`'s `stream` part (issue #32): `strm-spark stream` against the batch job, the fixed
cost of a micro-batch, and a Kafka stream under a steady load.

- files: the tiled UCI input as 27 files, the batch job against `stream --available-now` (one
  micro-batch, and three with maxFilesPerTrigger 9) over the same files, alternating, in one
  session: throughput ratio stream / batch (target >= 0.8).
- fixed cost: a micro-batch of a one-row file (seconds, Spark jobs), and a start that finds
  nothing new (Spark runs no micro-batch for it).
- Kafka: a real broker (tests/kafka_broker.py), a producer process writing 1,000 JSON events a
  second (Spark's rate source into Kafka), and `strm-spark stream --trigger-interval 10s` in a
  process of its own, for 5 minutes. Each micro-batch's wall time (from the table of runs;
  backlog grows when one takes longer than the interval), and for every row the time from its
  production (its event time, written by the producer) to the commit of the encrypted table's
  version that added it (from the Delta log): p50 (target <= 15 s) and p95.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the broker the tests start

ZONE = "Europe/Amsterdam"  # conf/online_retail.yaml's default_time_zone


def split_files(tiled: Path, folder: Path, files: int = 27) -> Path:
    """The tiled CSV as `files` files of about equal rows, each with the header."""
    if folder.exists() and len(list(folder.glob("*.csv"))) == files:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with open(tiled, encoding="utf-8") as fh:
        header, *lines = fh.read().splitlines()
    per = -(-len(lines) // files)
    for i in range(files):
        part = lines[i * per : (i + 1) * per]
        (folder / f"part-{i:02d}.csv").write_text("\n".join([header, *part]) + "\n")
    return folder


def _timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def files_vs_batch(spark, tiled: Path, work: Path, config_for, repeats: int) -> dict:
    from strm_spark.pipeline.run import run_job
    from strm_spark.pipeline.stream import StreamOptions, run_stream

    folder = split_files(tiled, work.parent / "input" / f"{tiled.stem}-27-files")
    rows = sum(1 for _ in open(tiled, encoding="utf-8")) - 1
    times: dict[str, list[float]] = {"batch": [], "stream": [], "stream_3_batches": []}
    warm = work / "warmup"  # JIT and caches warm for every variant alike
    shutil.rmtree(warm, ignore_errors=True)
    run_job(spark, config_for(folder, warm))
    shutil.rmtree(warm, ignore_errors=True)
    for i in range(repeats):
        for kind in times:
            out = work / f"{kind}-{i}"
            shutil.rmtree(out, ignore_errors=True)
            cfg = config_for(folder, out)
            if kind == "batch":
                t, _ = _timed(lambda: run_job(spark, cfg))
            else:
                opts = StreamOptions(max_files_per_trigger=9 if kind != "stream" else None)
                t, summary = _timed(lambda: run_stream(spark, cfg, opts))
                assert summary.rows_read == rows, (kind, summary.rows_read)
            times[kind].append(t)
            print(f"stream files: {kind:<17} run {i + 1}: {t:6.2f} s ({rows / t:,.0f} rows/s)")
            shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "rows": rows,
        "files": 27,
        "seconds": {k: round(v, 2) for k, v in med.items()},
        "throughput_ratio": round(med["batch"] / med["stream"], 2),
        "throughput_ratio_3_batches": round(med["batch"] / med["stream_3_batches"], 2),
    }


def fixed_cost(spark, counter, tiled: Path, work: Path, config_for, repeats: int) -> dict:
    """A one-row micro-batch (seconds, Spark jobs), warm, against a batch run of one row into
    existing tables, and a start with nothing new."""
    from strm_spark.pipeline.run import run_job
    from strm_spark.pipeline.stream import run_stream

    folder, out = work / "one-row-input", work / "one-row"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    folder.mkdir(parents=True)
    with open(tiled, encoding="utf-8") as fh:
        header, first = fh.readline(), fh.readline()
    cfg = config_for(folder, out)
    micro, inner, jobs, idle = [], [], None, []
    for i in range(repeats + 1):  # the first one creates the tables
        (folder / f"one-{i}.csv").write_text(header + first)
        mark = counter.mark() if counter else None
        t, _ = _timed(lambda: run_stream(spark, cfg))
        if i:
            micro.append(t)
            jobs = counter.since(mark) if counter else None
            runs = spark.read.format("delta").load(str(out / "_runs" / "runs"))
            inner.append(runs.orderBy("startedAt").collect()[-1]["wallTimeS"])
        t, summary = _timed(lambda: run_stream(spark, cfg))
        assert summary.micro_batches == 0
        idle.append(t)
    # The batch job on one row, into the tables of the first run (as a scheduled run would).
    one, batch, batch_jobs = work / "one-row-batch-input", [], None
    shutil.rmtree(one, ignore_errors=True)
    one.mkdir(parents=True)
    (one / "one.csv").write_text(header + first)
    for _ in range(repeats):
        mark = counter.mark() if counter else None
        t, _ = _timed(
            lambda: run_job(spark, replace(cfg, source=replace(cfg.source, path=_at(one))))
        )
        batch.append(t)
        batch_jobs = counter.since(mark) if counter else None
    shutil.rmtree(out, ignore_errors=True)
    return {
        # A stream start with one one-row micro-batch, and that micro-batch alone (its row
        # in the table of runs): the rest is the query's start, checkpoint and summary.
        "one_row_micro_batch_s": round(statistics.median(micro), 2),
        "one_row_micro_batch_alone_s": round(statistics.median(inner), 2),
        "one_row_micro_batch_spark_jobs": jobs["jobs"] if jobs else None,
        "one_row_batch_run_s": round(statistics.median(batch), 2),
        "one_row_batch_run_spark_jobs": batch_jobs["jobs"] if batch_jobs else None,
        "start_with_nothing_new_s": round(statistics.median(idle), 2),
    }


def _at(path: Path):
    from strm_spark.storage import Location

    return Location(str(path.resolve()), "path")


PRODUCER = """
import sys
from strm_spark.session import get_spark
from pyspark.sql import functions as F
bootstrap, topic, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
spark = get_spark("bench producer", "local[1]")
events = spark.readStream.format("rate").option("rowsPerSecond", rate).load()
local = F.from_utc_timestamp("timestamp", "Europe/Amsterdam")
value = F.to_json(F.struct(
    F.col("value").cast("string").alias("InvoiceNo"),
    F.lit("85123A").alias("StockCode"),
    F.lit("WHITE HANGING HEART T-LIGHT HOLDER").alias("Description"),
    F.lit(1).alias("Quantity"),
    F.date_format(local, "yyyy-MM-dd HH:mm:ss").alias("InvoiceDate"),
    F.lit("2.55").alias("UnitPrice"),
    (F.col("value") % 5000 + 12000).cast("string").alias("CustomerID"),
    F.lit("United Kingdom").alias("Country"),
))
query = (events.select(value.alias("value")).writeStream.format("kafka")
    .option("kafka.bootstrap.servers", bootstrap).option("topic", topic)
    .option("checkpointLocation", sys.argv[5]).trigger(processingTime="1 second").start())
query.awaitTermination(seconds)
query.stop()
"""


def kafka_load(work: Path, rate: int = 1000, seconds: float = 300, interval: str = "10s") -> dict:
    """The Kafka stream under `rate` events a second for `seconds`."""
    import yaml
    from kafka_broker import KafkaBroker

    from strm_spark.session import get_spark

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    broker = KafkaBroker(work / "broker", partitions=2).start()
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, STRM_SPARK_MASTER="local[2]")
    try:
        doc = yaml.safe_load((REPO / "conf" / "online_retail.yaml").read_text())
        doc["source"] = {
            "format": "kafka",
            "kafka": {"bootstrap_servers": broker.bootstrap, "topic": "events"},
            "options": {"startingOffsets": "earliest"},
        }
        doc["contract"] = str(REPO / "conf" / doc["contract"])
        out = work / "out"
        doc["keys"] = {**doc["keys"], "store": str(out / "keystore")}
        doc.pop("masking", None)
        doc["outputs"] = {
            "encrypted": str(out / "encrypted"),
            "data_subjects": str(out / "subjects"),
            "rejected": str(out / "rejected"),
        }
        (work / "job.yaml").write_text(yaml.safe_dump(doc))
        # The topic made by a five-second producer run (a stream started before its topic
        # exists fails with KafkaUnavailable), the stream started (its query up and waiting),
        # then the producer: the latency is measured on the rows produced after the stream
        # started, so it is the stream's, not its start-up's.
        subprocess.run(
            [sys.executable, "-c", PRODUCER, broker.bootstrap, "events", str(rate), "5",
             str(work / "topic-checkpoint")],
            env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        stream = subprocess.Popen(
            [sys.executable, "-m", "strm_spark.cli", "stream", str(work / "job.yaml"),
             "--trigger-interval", interval, "--timeout", str(seconds + 60)],
            env=env, stdout=subprocess.PIPE, stderr=open(work / "stream.log", "w"), text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 180
        while "started (" not in (work / "stream.log").read_text():
            if stream.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the stream did not start: see {work / 'stream.log'}")
            time.sleep(0.5)
        since = time.time()
        producer = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, broker.bootstrap, "events", str(rate),
             str(seconds), str(work / "producer-checkpoint")],
            env=env, stdout=subprocess.DEVNULL, stderr=open(work / "producer.log", "w"),
        )  # fmt: skip
        producer.wait(seconds + 120)
        summary, _ = stream.communicate(timeout=seconds + 240)
        if stream.returncode != 0:
            raise RuntimeError(f"the stream failed: see {work / 'stream.log'}")
        spark = get_spark("bench kafka figures", "local[2]")
        reader = spark.read.format("kafka").option("kafka.bootstrap.servers", broker.bootstrap)
        produced = reader.option("subscribe", "events").load().count()
    finally:
        broker.stop()
    return _latency(spark, out, summary, interval, rate, seconds, produced, since)


def _commits(table: Path) -> dict[str, float]:
    """Each data file of a Delta table -> the commit time (epoch seconds) of the version that
    added it, from the table's log."""
    added = {}
    for log in sorted((table / "_delta_log").glob("*.json")):
        actions = [json.loads(line) for line in log.read_text().splitlines() if line]
        ts = next(a["commitInfo"]["timestamp"] for a in actions if "commitInfo" in a) / 1000
        for a in actions:
            if "add" in a:
                added[a["add"]["path"]] = ts
    return added


def _latency(
    spark,
    out: Path,
    summary: str,
    interval: str,
    rate: int,
    seconds: float,
    produced: int,
    since: float,
) -> dict:
    from pyspark.sql import functions as F

    commits = _commits(out / "encrypted")
    enc = spark.read.format("delta").load(str(out / "encrypted"))
    rows = enc.select(
        F.element_at(F.split(F.col("_metadata.file_path"), "/"), -1).alias("file"),
        "InvoiceDate",
    ).collect()
    zone = ZoneInfo(ZONE)
    made = [
        (commits[r["file"]], datetime.strptime(r["InvoiceDate"], "%Y-%m-%d %H:%M:%S")) for r in rows
    ]
    made = [(c, m.replace(tzinfo=zone).timestamp()) for c, m in made]
    latencies = sorted(c - m for c, m in made if m >= since - 1)  # after the stream started
    runs = spark.read.format("delta").load(str(out / "_runs" / "runs"))
    walls = [r["wallTimeS"] for r in runs.orderBy("startedAt").collect()]
    limit = float(interval.rstrip("s"))

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 1)

    return {
        "rate_per_s": rate,
        "seconds": seconds,
        "trigger_interval": interval,
        "rows_produced": produced,
        "rows_encrypted": len(rows),
        "rows_timed": len(latencies),
        "micro_batches": len(walls),
        "micro_batch_wall_s": {
            "median": round(statistics.median(walls), 2) if walls else None,
            "max": round(max(walls), 2) if walls else None,
            "over_interval": sum(w > limit for w in walls),
        },
        # Latency from production (event time, second precision: up to 1 s more) to commit.
        "latency_s": {"p50": pct(0.5), "p95": pct(0.95), "max": pct(1.0)} if latencies else None,
        "summary": summary.strip().splitlines()[:8],
    }


def bench(spark, counter, tiled: Path, work: Path, config_for, repeats: int) -> dict:
    result = {
        "files": files_vs_batch(spark, tiled, work / "files", config_for, repeats),
        "fixed_cost": fixed_cost(spark, counter, tiled, work / "fixed", config_for, repeats),
    }
    print(f"stream: {result}", flush=True)
    return result


def with_checkpoint(cfg, out: Path):
    """A bench config that appends (as a stream does; the batch job too, on a new folder), with
    its checkpoint under `out` (the loader's default)."""
    return replace(cfg, checkpoint=_at(out / "_runs" / "checkpoint"), write_mode="append")
