"""spark-submit entry point for STRM's job files: `spark-submit [OPTIONS] jobs/strm_job.py
--config C --contract K --schema S --connector NAME=URI`."""

from strm_spark.cli.entrypoints import strm_job_main

if __name__ == "__main__":
    raise SystemExit(strm_job_main())
