"""spark-submit entry point for data-subject requests: the arguments of `strm-spark subjects`."""

from strm_spark.cli.entrypoints import subjects_main

if __name__ == "__main__":
    raise SystemExit(subjects_main())
