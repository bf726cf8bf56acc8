"""spark-submit entry point: `spark-submit [OPTIONS] jobs/stream_job.py CONFIG [--trigger-interval D]`."""

from strm_spark.cli.entrypoints import stream_job_main

if __name__ == "__main__":
    raise SystemExit(stream_job_main())
