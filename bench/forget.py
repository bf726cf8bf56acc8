"""Benchmark: the time to forget one data subject, for encrypted tables of different sizes.

For each size, the real UCI Online Retail file is tiled to N rows (bench/tile.py) and one
synthetic customer with the same 25 rows over 5 days is added, so the subject's footprint is
the same at every size and only the tables grow. The job runs once (not timed as part of the
forget), then `forget` is timed for that customer and for an unknown one. The encrypted table is
never read or written by forget; derived tables are pruned to the subject's days but VACUUM
lists their folders, so they count a little.

    python bench/forget.py                      # 500,000 and 5,000,000 rows
    python bench/forget.py --rows 500000        # one size
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from tile import tile_uci  # noqa: E402

from strm_spark.config.load import parse_job_config  # noqa: E402

UCI = REPO.parent / "shared" / "data" / "strm-blogpost" / "uci_online_retail.csv"
SUBJECT = "99999"  # not a UCI customer id
SUBJECT_DAYS = [datetime(2010, 12, 2) + timedelta(days=3 * i) for i in range(5)]


def _with_subject(tiled: Path, out: Path) -> Path:
    """The tiled file plus 25 rows of SUBJECT (5 per day on 5 days)."""
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    shutil.copyfile(tiled, tmp)
    with open(tmp, "a", encoding="utf-8") as fh:
        for day in SUBJECT_DAYS:
            for i in range(5):
                when = (day + timedelta(hours=9, minutes=7 * i)).strftime("%Y-%m-%d %H:%M:%S")
                fh.write(f"999{i},BENCH{i},BENCH ITEM,{i + 1},{when},1.25,{SUBJECT},Netherlands\n")
    tmp.rename(out)
    return out


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*.parquet") if "_delta_log" not in p.parts]
    return len(files), sum(p.stat().st_size for p in files)


def _config(work: Path, source: Path):
    doc = {
        "name": "bench_forget",
        "contract": str(REPO / "conf" / "online_retail_contract.yaml"),
        "source": {"path": str(source), "format": "csv"},
        "consent": {"default_levels": [2]},
        "timestamp": {
            "field": "InvoiceDate",
            "pattern": "yyyy-MM-dd HH:mm:ss",
            "default_time_zone": "Europe/Amsterdam",
        },
        "keys": {"group_id": "bench", "store": str(work / "keystore")},
        "outputs": {
            "mode": "overwrite",
            "encrypted": str(work / "encrypted"),
            "data_subjects": str(work / "data_subjects"),
            "rejected": str(work / "rejected"),
            "derived": [
                {
                    "name": "decrypted-0",
                    "path": str(work / "derived"),
                    "consent_type": "CUMULATIVE",
                    "consent_levels": [2],
                }
            ],
        },
    }
    return parse_job_config(doc, "bench", work)


def bench(rows: int, work_root: Path) -> dict:
    from strm_spark.pipeline.run import run_job
    from strm_spark.session import get_spark
    from strm_spark.subjects import forget

    spark = get_spark("strm-spark bench forget", extra_conf={"spark.driver.memory": "4g"})
    work = work_root / f"rows-{rows}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    tiled = tile_uci(UCI, work_root / f"uci-{rows}.csv", rows)
    source = _with_subject(tiled, work_root / f"uci-{rows}-subject.csv")
    config = _config(work, source)

    started = time.monotonic()
    summary = run_job(spark, config)
    job_s = time.monotonic() - started
    enc_files, enc_bytes = _size(work / "encrypted")
    der_files, der_bytes = _size(work / "derived")

    found = forget(spark, config, [SUBJECT])
    unknown = forget(spark, config, ["no-such-customer"])
    # The forgotten subject's rows are still in the encrypted table, now without keys.
    left = (
        spark.read.format("delta")
        .load(config.encrypted.path)
        .where("strmDay >= '2010-12-02' AND StockCode LIKE 'BENCH%'")
        .count()
    )
    return {
        "rows": summary.rows_read,
        "job_s": round(job_s, 1),
        "keys": summary.keys_needed,
        "encrypted_files": enc_files,
        "encrypted_mb": round(enc_bytes / 1e6, 1),
        "derived_files": der_files,
        "derived_mb": round(der_bytes / 1e6, 1),
        "forget_s": found.wall_time_s,
        "forget_steps_s": found.step_seconds,
        "forget_keys_removed": found.keys_removed,
        "forget_derived_rows_removed": found.derived_total,
        "forget_files_removed": found.files_removed,
        "forget_unknown_s": unknown.wall_time_s,
        "encrypted_rows_of_subject_left": left,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, nargs="+", default=[500_000, 5_000_000])
    parser.add_argument("--work", type=Path, default=REPO / "out" / "bench-forget")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    results = []
    for rows in args.rows:
        result = bench(rows, args.work)
        results.append(result)
        print(json.dumps(result), flush=True)
    print()
    print(
        f"{'rows':>10} {'encrypted':>14} {'derived':>14} {'job':>8} {'forget':>8}   forget steps (s)"
    )
    for r in results:
        steps = ", ".join(f"{k} {v}" for k, v in r["forget_steps_s"].items())
        print(
            f"{r['rows']:>10,} {r['encrypted_mb']:>9.1f} MB/{r['encrypted_files']:<4} "
            f"{r['derived_mb']:>7.1f} MB/{r['derived_files']:<4} {r['job_s']:>7.1f}s {r['forget_s']:>7.1f}s   {steps}"
        )
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
