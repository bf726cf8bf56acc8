"""spark-submit entry point: `spark-submit jobs/batch_job.py CONFIG [--source PATH]`."""

from __future__ import annotations

import sys

from strm_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
