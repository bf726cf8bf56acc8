"""`make bench`: the privacy job against the physical floor, on UCI-shaped inputs.

For each size, alternating runs in one Spark session: (a) the floor, Spark reading the CSV and
writing it to Delta; (a') the same with the encrypted table's layout, partitioned by UTC day;
(p) the peer, what a Spark user would write instead (contract types, `aes_encrypt` under one
static key, Delta); (b) the job (encrypted + keys + data subjects); (c) the job with one
CUMULATIVE derived output. Medians and spread over the repeats, ratios b/a, c/a, a'/a and b/p,
and the Spark jobs of the last job run (Spark's REST API). Then the 19,998-row UCI batch against
a store with only its own keys and one with 3,000,000 more keys and links (history), the floor
and `strm-spark run` end to end in new processes (JVM start included), the demo job's wall time,
the encryption stage alone, the key store size per million keys and on-the-fly decryption
against a plaintext query. Results: out/bench/results.json, extra.json, results.md (with issue
#30's targets) and ratios.png.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # demo/ (the generator) is not in the wheel
sys.path.insert(0, str(REPO / "bench"))

import parts  # noqa: E402
from extras import encryption_stage, process_tree_peaks  # noqa: E402
from tile import tile_uci  # noqa: E402

UCI = REPO.parent / "shared" / "data" / "strm-blogpost" / "uci_online_retail.csv"
OUT = REPO / "out" / "bench"


def _inputs(sizes: list[int]) -> dict[int, Path]:
    paths = {}
    for rows in sizes:
        path = OUT / "input" / f"uci_{rows}.csv"
        if UCI.is_file():
            tile_uci(UCI, path, rows)
        elif not path.exists():
            # Without ../shared, fall back to the project's generator (a different shape).
            print(f"note: {UCI} is absent; using the generated clickstream for {rows:,} rows")
            from demo.generate import generate

            generate(str(path), rows=rows)
        paths[rows] = path
    return paths


def _config(src: Path, out: Path, derived: bool):
    from strm_spark.config.load import load_job_config

    cfg = load_job_config(REPO / "conf" / "online_retail.yaml")
    from dataclasses import replace

    from strm_spark.config.model import OutputConfig
    from strm_spark.storage import Location

    def at(path: Path) -> Location:  # a local path, as the config loader resolves one
        return Location(str(path.resolve()), "path")

    cfg = replace(
        cfg,
        source=replace(cfg.source, path=at(src)),
        key_store=at(out / "keystore"),
        audit=at(out / "keystore" / "audit"),
        encrypted=OutputConfig(at(out / "encrypted")),
        data_subjects=OutputConfig(at(out / "subjects")),
        rejected=OutputConfig(at(out / "rejected")),
        summary_dir=at(out / "_runs"),
        derived=tuple(replace(d, path=at(out / "derived")) for d in cfg.derived) if derived else (),
    )
    return cfg


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _floor(spark, src: Path, out: Path) -> None:
    df = spark.read.option("header", "true").option("escape", '"').csv(str(src))
    df.write.format("delta").mode("overwrite").save(str(out))


def _floor_by_day(spark, src: Path, out: Path, cfg) -> None:
    """The floor with the layout issue #2 asks of the encrypted table: the UTC day computed
    as the job does, rows shuffled by day and written partitioned by day. No privacy work."""
    from pyspark.sql import functions as F

    from strm_spark.timestamps.parse import epoch_millis, parse_event_time, utc_day

    ts = cfg.timestamp
    df = spark.read.option("header", "true").option("escape", '"').csv(str(src))
    day = utc_day(epoch_millis(parse_event_time(F.col(ts.field), ts.pattern, ts.default_time_zone)))
    (
        df.withColumn("strmDay", day)
        .repartition("strmDay")
        .sortWithinPartitions("strmDay")
        .write.format("delta")
        .mode("overwrite")
        .partitionBy("strmDay")
        .save(str(out))
    )


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def _history_config(src: Path, out: Path):
    """The UCI job as a history run: its outputs overwritten, its keys and data subjects kept."""
    return _config(src, out, derived=False)


def main() -> int:
    global OUT
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="541909,2709545")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decrypt-rows", type=int, default=1_000_000)
    parser.add_argument("--encrypt-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--history-extra",
        type=int,
        default=3_000_000,
        help="keys and data-subject links added to the history variant's big store",
    )
    parser.add_argument(
        "--history-rebuild",
        action="store_true",
        help="rebuild the history variant's cached big store",
    )
    parser.add_argument(
        "--demo-rows", type=int, default=100_000, help="rows of the demo job's input"
    )
    parser.add_argument(
        "--out", default=str(OUT), help="where inputs, work and results go (default out/bench)"
    )
    parser.add_argument(
        "--parts",
        default="ratios,history,decrypt,encrypt,e2e,demo,stream,kafka",
        help="comma-separated subset of ratios,history,decrypt,encrypt,e2e,demo,stream,kafka",
    )
    parser.add_argument(
        "--stream-rows",
        type=int,
        default=2_709_545,
        help="rows of the stream part's input, split into 27 files",
    )
    parser.add_argument("--kafka-seconds", type=float, default=300)
    parser.add_argument("--kafka-rate", type=int, default=1000)
    args = parser.parse_args()
    OUT = Path(args.out).resolve()
    parts_ = set(args.parts.split(","))
    unknown = parts_ - {"ratios", "history", "decrypt", "encrypt", "e2e", "demo", "stream", "kafka"}
    if unknown:
        parser.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    sizes = [int(s) for s in args.sizes.split(",")]
    OUT.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(
        sizes
        + ([args.decrypt_rows] if "decrypt" in parts_ else [])
        + ([args.stream_rows] if "stream" in parts_ else [])
    )

    from strm_spark.pipeline.run import run_job
    from strm_spark.session import get_spark

    # The UI on (loopback, a free port) only for its REST API: Spark jobs per run.
    spark = get_spark(
        "strm-spark bench",
        master="local[2]",
        shuffle_partitions=4,
        extra_conf={"spark.ui.enabled": "true", "spark.ui.port": "0"},
    )
    try:
        counter = parts.SparkJobs(spark)
    except Exception as exc:
        print(f"note: no Spark job counts ({exc})", flush=True)
        counter = None
    results = []
    work = OUT / "work"
    for rows in sizes if "ratios" in parts_ else []:
        src = inputs[rows]
        contract = _config(src, work, derived=False).contract
        times: dict[str, list[float]] = {
            "floor": [],
            "floor_by_day": [],
            "peer": [],
            "job": [],
            "job_derived": [],
        }
        _floor(spark, src, work / "warmup")  # JIT and caches warm for every variant alike
        parts.peer(spark, src, work / "warmup-peer", contract)
        jobs = None
        for i in range(args.repeats):
            for kind in times:
                target = work / f"{kind}-{i}"
                shutil.rmtree(target, ignore_errors=True)
                mark = counter.mark() if counter and kind == "job" else None
                if kind == "floor":
                    t = _timed(lambda: _floor(spark, src, target))
                elif kind == "floor_by_day":
                    t = _timed(
                        lambda: _floor_by_day(
                            spark, src, target, _config(src, target, derived=False)
                        )
                    )
                elif kind == "peer":
                    t = _timed(lambda: parts.peer(spark, src, target, contract))
                else:
                    cfg = _config(src, target, derived=(kind == "job_derived"))
                    t = _timed(lambda: run_job(spark, cfg))
                if mark is not None:
                    jobs = counter.since(mark)
                times[kind].append(t)
                print(
                    f"{rows:>10,} rows  {kind:<12} run {i + 1}: {t:6.2f} s ({rows / t:,.0f} rows/s)"
                    + (f", {jobs['jobs']} Spark jobs" if mark is not None else ""),
                    flush=True,
                )
        profile = None
        if counter is not None:  # one more warm job run, stage by stage
            target = work / "job-profile"
            shutil.rmtree(target, ignore_errors=True)
            cfg = _config(src, target, derived=False)
            profile = parts.stage_profile(spark, counter, lambda: run_job(spark, cfg))
            shutil.rmtree(target, ignore_errors=True)
            print(parts.stages_markdown(profile, rows), flush=True)
        keys_dir = work / f"job-{args.repeats - 1}" / "keystore" / "keys"
        key_count = spark.read.format("delta").load(str(keys_dir)).count()
        key_bytes = sum(p.stat().st_size for p in keys_dir.rglob("*.parquet"))
        med = {k: statistics.median(v) for k, v in times.items()}
        results.append(
            {
                "rows": rows,
                "floor_s": round(med["floor"], 2),
                "job_s": round(med["job"], 2),
                "job_derived_s": round(med["job_derived"], 2),
                "ratio_job": round(med["job"] / med["floor"], 2),
                "ratio_derived": round(med["job_derived"] / med["floor"], 2),
                # How much of the gap the day-partitioned layout alone makes, with no privacy work.
                "floor_by_day_s": round(med["floor_by_day"], 2),
                "ratio_floor_by_day": round(med["floor_by_day"] / med["floor"], 2),
                "ratio_job_to_floor_by_day": round(med["job"] / med["floor_by_day"], 2),
                # What a Spark user would write instead: contract types, aes_encrypt, one key.
                "peer_s": round(med["peer"], 2),
                "ratio_job_to_peer": round(med["job"] / med["peer"], 2),
                "ratio_peer": round(med["peer"] / med["floor"], 2),
                # Spark jobs (and stages) of the last job run: warm session, new key store.
                "spark_jobs_per_run": jobs["jobs"] if jobs else None,
                "spark_stages_per_run": jobs["stages"] if jobs else None,
                # One more warm run, stage by stage: seconds, Spark jobs, driver time.
                "driver_s": profile["driver_s"] if profile else None,
                "stages": profile,
                "spread_s": {k: _stats(v) for k, v in times.items()},
                "rows_per_s": {k: round(rows / v) for k, v in med.items()},
                "keys": key_count,
                "key_store_mb_per_million_keys": round(key_bytes / key_count * 1e6 / 2**20, 1)
                if key_count
                else None,
            }
        )
        for i in range(args.repeats):
            for kind in times:
                shutil.rmtree(work / f"{kind}-{i}", ignore_errors=True)
        for name in ("warmup", "warmup-peer"):
            shutil.rmtree(work / name, ignore_errors=True)

    extra = {}
    if "history" in parts_:
        if UCI.is_file():
            extra["history"] = parts.history(
                spark,
                counter,
                UCI,
                OUT / "history",
                _history_config,
                args.history_extra,
                args.repeats,
                args.history_rebuild,
            )
            print(f"history: {extra['history']}", flush=True)
        else:
            print(f"note: {UCI} is absent; no history variant", flush=True)
    if "decrypt" in parts_:
        extra["decryption"] = _decryption(spark, inputs[args.decrypt_rows], work / "decrypt")
    if "encrypt" in parts_:
        extra["encryption_stage"] = encryption_stage(spark, args.encrypt_rows, OUT / "input")
        print(f"encryption stage: {extra['encryption_stage']}", flush=True)
    if "stream" in parts_:
        import stream

        extra["stream"] = stream.bench(
            spark,
            counter,
            inputs[args.stream_rows],
            work / "stream",
            lambda src, out: stream.with_checkpoint(_config(src, out, derived=False), out),
            args.repeats,
        )
    spark.stop()
    if "kafka" in parts_:
        import stream

        extra["kafka"] = stream.kafka_load(
            work / "kafka", rate=args.kafka_rate, seconds=args.kafka_seconds
        )
        print(f"kafka: {extra['kafka']}", flush=True)
    if "e2e" in parts_:
        extra["end_to_end"] = _end_to_end(inputs[sizes[0]], work / "e2e", args.repeats)
        print(f"end to end: {extra['end_to_end']}", flush=True)
    if "demo" in parts_:
        extra["demo"] = parts.demo(work / "demo", args.demo_rows)
        print(f"demo: {extra['demo']}", flush=True)
    if len(results) > 1:
        first, last = results[0], results[-1]
        extra["scaling"] = {
            "rows_ratio": round(last["rows"] / first["rows"], 2),
            "job_time_ratio": round(last["job_s"] / first["job_s"], 2),
        }
    # Only the parts that ran replace earlier figures.
    if results:
        (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    old_extra = (
        json.loads((OUT / "extra.json").read_text()) if (OUT / "extra.json").exists() else {}
    )
    extra = {**old_extra, **extra}
    if not results and (OUT / "results.json").exists():
        results = json.loads((OUT / "results.json").read_text())
    (OUT / "extra.json").write_text(json.dumps(extra, indent=2) + "\n")
    png = parts.chart(results, extra, OUT / "ratios.png")
    md = _markdown(results, extra) + "\n" + parts.targets_markdown(results, extra)
    if png is not None:
        md += f"\nChart: {png}\n"
    (OUT / "results.md").write_text(md)
    print(md)
    return 0


def _decryption(spark, src: Path, out: Path) -> dict[str, float]:
    """On-the-fly decryption of one PII column through the view vs. the same query on a
    plaintext copy, in one run."""
    from pyspark.sql import functions as F

    from strm_spark.crypto.engines import register_jvm
    from strm_spark.keys.store import KeyStore
    from strm_spark.pipeline.run import run_job
    from strm_spark.sql.views import register_job_views

    shutil.rmtree(out, ignore_errors=True)
    cfg = _config(src, out, derived=True)
    run_job(spark, cfg)
    register_job_views(spark, cfg, prefix="b_", engine="python")
    tables = {"plain": "b_plain", "view": "b_decrypted_0"}
    if register_jvm(spark):  # the JVM functions (make udf), measured alongside
        register_job_views(spark, cfg, prefix="j_", engine="jvm")
        tables["view_jvm"] = "j_decrypted_0"
    spark.read.format("delta").load(cfg.derived[0].path).createOrReplaceTempView("b_plain")
    # A lower bound for any view that looks keys up at query time: the encrypted table joined
    # with the key store on key link, as the view does it, with no consent filter, no keysets
    # carried and nothing decrypted.
    encrypted = spark.read.format("delta").load(cfg.encrypted.path)
    keys = KeyStore(spark, cfg.key_store, None).cleartext_keys()
    (
        encrypted.join(
            keys.select(F.col("keyLink").alias("__link")),
            F.col("strmMeta.keyLink") == F.col("__link"),
            "left",
        )
        .select("CustomerID")
        .createOrReplaceTempView("b_join")
    )
    tables["join"] = "b_join"
    preloaded = None
    if "view_jvm" in tables:
        # A bound for anything done to the key store's side: the JVM view with the key store's
        # keys read, compacted and cached in memory before the query runs (the view keeps
        # compact keysets as they are), so only the per-row work is timed: consent filter,
        # join, decryption. A view may not do this: keys cached in a session would outlive a
        # forget.
        from strm_spark.crypto.engines import compact_keyset_column
        from strm_spark.sql.views import decrypting_view

        d = cfg.derived[0]
        preloaded = keys.select(
            "keyLink", compact_keyset_column(F.col("keyset")).alias("keyset")
        ).cache()
        preloaded.count()
        (
            decrypting_view(
                encrypted, preloaded, cfg.contract, d.consent_type, d.consent_levels, engine="jvm"
            ).createOrReplaceTempView("b_preloaded")
        )
        tables["preloaded"] = "b_preloaded"
    query = "SELECT count(DISTINCT CustomerID), count(*) FROM {}"
    timings: dict[str, list[float]] = {kind: [] for kind in tables}
    for _ in range(3):
        for kind, table in tables.items():
            timings[kind].append(_timed(lambda: spark.sql(query.format(table)).collect()))
    med = {kind: statistics.median(v) for kind, v in timings.items()}
    if preloaded is not None:
        preloaded.unpersist(blocking=True)
    shutil.rmtree(out, ignore_errors=True)
    with open(src, encoding="utf-8") as fh:
        rows = sum(1 for _ in fh) - 1
    result = {
        "rows": rows,
        "view_s": round(med["view"], 2),
        "join_only_s": round(med["join"], 2),
        "ratio_join_only": round(med["join"] / med["plain"], 2),
        "plain_s": round(med["plain"], 2),
        "ratio": round(med["view"] / med["plain"], 2),
    }
    if "view_jvm" in med:
        result.update(
            view_jvm_s=round(med["view_jvm"], 2),
            ratio_jvm=round(med["view_jvm"] / med["plain"], 2),
            preloaded_keys_s=round(med["preloaded"], 2),
            ratio_preloaded_keys=round(med["preloaded"] / med["plain"], 2),
        )
    return result


def _end_to_end(src: Path, out: Path, repeats: int = 1) -> dict:
    """`strm-spark run` and the floor (get_spark, read the CSV, write Delta, stop), each in a new
    process (JVM start included), alternating; medians. Peak RSS of the job's processes."""
    cfg = {
        "name": "bench",
        "contract": str(REPO / "conf" / "online_retail_contract.yaml"),
        "event_contract_ref": "strmprivacy/online-retail/1.0.0",
        "source": {"path": str(src), "format": "csv"},
        "consent": {"default_levels": [2]},
        "timestamp": {
            "field": "InvoiceDate",
            "pattern": "yyyy-MM-dd HH:mm:ss",
            "default_time_zone": "Europe/Amsterdam",
        },
        "keys": {"group_id": "bench", "store": str(out / "keystore")},
        "outputs": {
            "encrypted": str(out / "encrypted"),
            "data_subjects": str(out / "subjects"),
            "rejected": str(out / "rejected"),
        },
    }
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, STRM_SPARK_MASTER="local[2]")
    jobs, floors, peaks, peak_mb = [], [], {}, None
    for i in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        (out.parent / "e2e-job.json").write_text(json.dumps(cfg))
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "strm_spark.cli", "run", str(out.parent / "e2e-job.json")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        run_peaks = process_tree_peaks(proc)  # sampled every 0.2 s until the run ends
        jobs.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"strm-spark run failed with exit code {proc.returncode}")
        peaks = {k: max(v, peaks.get(k, 0)) for k, v in run_peaks.items()}
        if peak_mb is None:  # before any floor process ran (getrusage keeps the children's maximum)
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        shutil.rmtree(out, ignore_errors=True)
        floors.append(parts.floor_process(src, out.parent / "e2e-floor"))
        print(
            f"end to end run {i + 1}: job {jobs[-1]:6.2f} s, floor {floors[-1]:6.2f} s", flush=True
        )
    (out.parent / "e2e-job.json").unlink(missing_ok=True)
    with open(src, encoding="utf-8") as fh:
        rows = sum(1 for _ in fh) - 1
    job, floor = statistics.median(jobs), statistics.median(floors)
    return {
        "rows": rows,
        "wall_s": round(job, 2),
        "e2e_job_s": round(job, 2),
        "e2e_floor_s": round(floor, 2),
        "ratio_e2e": round(job / floor, 2),
        "spread_s": {"job": _stats(jobs), "floor": _stats(floors)},
        "peak_rss_largest_process_mb": round(peak_mb),
        "peak_rss_mb": peaks,
    }


def _markdown(results: list[dict], extra: dict) -> str:
    lines = [
        "| rows | floor s | floor by day s | peer s | job s | job+derived s | job / floor | derived / floor "
        "| floor by day / floor | job / peer | Spark jobs per job run | job rows/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['floor_s']} | {r.get('floor_by_day_s', '')} | {r.get('peer_s', '')} | "
            f"{r['job_s']} | {r['job_derived_s']} | {r['ratio_job']} | {r['ratio_derived']} | "
            f"{r.get('ratio_floor_by_day', '')} | {r.get('ratio_job_to_peer', '')} | "
            f"{r.get('spark_jobs_per_run') if r.get('spark_jobs_per_run') is not None else ''} | "
            f"{r['rows_per_s']['job']:,} |"
        )
    lines.append("")
    if "history" in extra:
        h = extra["history"]
        jobs = h.get("spark_jobs_per_run") or {}
        lines.append(
            f"History ({h['rows']:,}-row UCI batch, all {h['keys_reused']:,} keys reused): "
            f"{h['history_base_s']} s against a store of its own keys, {h['history_3m_s']} s after "
            f"{h['extra_keys']:,} keys and {h['extra_links']:,} data-subject links of its group were added "
            f"(ratio {h['ratio_history']}; keys table {h['keys_mb']['big']} MB)"
            + (f"; Spark jobs per run {jobs.get('base')} and {jobs.get('big')}" if jobs else "")
            + "."
        )
    if "end_to_end" in extra:
        e2e = extra["end_to_end"]
        lines.append(
            f"End to end (`strm-spark run`, new JVM, UCI-shaped rows of the first size): {e2e['wall_s']} s"
            + (
                f"; the floor in a new process {e2e['e2e_floor_s']} s (job / floor {e2e['ratio_e2e']}, "
                f"{e2e['rows']:,} rows)"
                if "e2e_floor_s" in e2e
                else ""
            )
            + f"; peak RSS of the largest process {e2e['peak_rss_largest_process_mb']} MB."
        )
        if "peak_rss_mb" in e2e:
            p = e2e["peak_rss_mb"]
            lines.append(
                f"Peak RSS: driver JVM {p['driver_jvm_mb']} MB, driver Python {p['driver_python_mb']} MB, "
                f"largest Python worker {p['largest_worker_mb']} MB, all workers {p['all_workers_mb']} MB."
            )
    if extra.get("demo", {}).get("demo_wall_s") is not None:
        d = extra["demo"]
        lines.append(
            f"Demo job (`strm-spark run` on conf/demo.yaml, {d['rows']:,} generated rows, new process, new "
            f"key store): {d['demo_wall_s']} s in its run summary, {d['demo_process_s']} s for the process."
        )
    if "stream" in extra:
        st, fc = extra["stream"]["files"], extra["stream"]["fixed_cost"]
        lines.append(
            f"Stream (`stream --available-now`, {st['rows']:,} rows in {st['files']} files): "
            f"{st['seconds']['stream']} s in one micro-batch, {st['seconds']['stream_3_batches']} s in "
            f"three, against {st['seconds']['batch']} s for the batch job (throughput ratio "
            f"{st['throughput_ratio']}, {st['throughput_ratio_3_batches']} in three; target >= 0.8). "
            f"A stream start with one one-row micro-batch: {fc['one_row_micro_batch_s']} s, "
            f"{fc['one_row_micro_batch_spark_jobs']} Spark jobs, the micro-batch itself "
            f"{fc.get('one_row_micro_batch_alone_s')} s (a one-row batch run into the "
            f"same tables: {fc.get('one_row_batch_run_s')} s, "
            f"{fc.get('one_row_batch_run_spark_jobs')} Spark jobs); a start with nothing new: "
            f"{fc['start_with_nothing_new_s']} s (no micro-batch)."
        )
    if "kafka" in extra:
        k = extra["kafka"]
        w, lat = k["micro_batch_wall_s"], k["latency_s"] or {}
        lines.append(
            f"Kafka ({k['rate_per_s']:,} events/s for {k['seconds']:.0f} s, trigger every "
            f"{k['trigger_interval']}): {k['rows_encrypted']:,} of {k.get('rows_produced') or 0:,} "
            f"rows produced encrypted in {k['micro_batches']} "
            f"micro-batches; micro-batch wall time median {w['median']} s, max {w['max']} s, "
            f"{w['over_interval']} over the interval; produce to visible p50 {lat.get('p50')} s "
            f"(target <= 15), p95 {lat.get('p95')} s, max {lat.get('max')} s."
        )
    if "decryption" in extra:
        d = extra["decryption"]
        lines.append(
            f"Decrypting view vs plaintext ({d['rows']:,} rows): {d['view_s']} s vs {d['plain_s']} s "
            f"(ratio {d['ratio']}, Python UDF)"
            + (
                f"; {d['view_jvm_s']} s (ratio {d['ratio_jvm']}) with the JVM UDF"
                if "view_jvm_s" in d
                else ""
            )
            + (
                f"; the key lookup alone (join, no decryption) {d['join_only_s']} s (ratio {d['ratio_join_only']})"
                if "join_only_s" in d
                else ""
            )
            + (
                f"; the JVM view with its keys preloaded in memory {d['preloaded_keys_s']} s "
                f"(ratio {d['ratio_preloaded_keys']})"
                if "preloaded_keys_s" in d
                else ""
            )
            + "."
        )
    if "encryption_stage" in extra:
        e = extra["encryption_stage"]
        lines.append(
            f"Encryption stage alone ({e['rows']:,} webshop rows, {e['pii_fields']} PII fields, {e['keys']:,} keys): "
            f"{e['stage_rows_per_s']:,} rows/s ({e['cells_per_s']:,} cells/s) with the Arrow UDFs"
            + (
                f", {e['stage_rows_per_s_jvm']:,} rows/s ({e['cells_per_s_jvm']:,} cells/s) in the JVM"
                if "stage_rows_per_s_jvm" in e
                else ""
            )
            + f"; no-op sink {e['with_encryption_s']} s with Arrow encryption"
            + (
                f", {e['with_encryption_jvm_s']} s with JVM encryption"
                if "with_encryption_jvm_s" in e
                else ""
            )
            + f", {e['without_s']} s without."
        )
    for r in results:
        lines.append(
            f"Key store: {r['key_store_mb_per_million_keys']} MB per million keys ({r['keys']:,} keys)."
        )
    for r in results:
        if r.get("stages"):
            lines.append("")
            lines.append(parts.stages_markdown(r["stages"], r["rows"]))
    if "scaling" in extra:
        s = extra["scaling"]
        lines.append(f"Scaling: {s['rows_ratio']}x rows took {s['job_time_ratio']}x the job time.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
