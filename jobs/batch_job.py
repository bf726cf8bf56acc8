"""spark-submit entry point: `spark-submit [OPTIONS] jobs/batch_job.py CONFIG [--source PATH]`."""

from strm_spark.cli.entrypoints import batch_job_main

if __name__ == "__main__":
    raise SystemExit(batch_job_main())
