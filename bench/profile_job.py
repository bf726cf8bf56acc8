"""Stage timings of the job on the bench's 541,909-row UCI input: `python bench/profile_job.py [RUNS]`.

Runs the job RUNS times (3 by default) in one Spark session (local[2]), each into a new
folder under out/bench/profile, and prints the job's stage log lines (`[n/6] ... (x s)`) and
each run's wall time. The first run pays for JVM warm-up; compare the later ones. Run
`make bench` (or `python bench/run.py --parts ratios --sizes 541909 --repeats 1`) first so
the input exists.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # demo/ (the generator) is not in the wheel
sys.path.insert(0, str(REPO / "bench"))

from run import OUT, _config  # noqa: E402


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    src = OUT / "input" / "uci_541909.csv"
    if not src.exists():
        print(f"{src} is missing: run make bench first", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)8.0f ms %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    from strm_spark.pipeline.run import run_job
    from strm_spark.session import get_spark

    spark = get_spark("strm-spark profile", master="local[2]", shuffle_partitions=4)
    for i in range(runs):
        out = OUT / "profile" / f"run-{i}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        summary = run_job(spark, _config(src, out, derived=False))
        print(
            f"run {i + 1}: {time.perf_counter() - start:.2f} s for {summary.rows_read:,} rows",
            flush=True,
        )
    shutil.rmtree(OUT / "profile", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
