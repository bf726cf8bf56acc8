"""strm-spark: privacy-by-design batch processing on Apache Spark."""

from __future__ import annotations

from strm_spark.config.load import load_job_config, parse_job_config
from strm_spark.config.model import JobConfig
from strm_spark.contract.model import Contract
from strm_spark.contract.parse import load_contract, parse_contract
from strm_spark.errors import ConfigError, DataError, StrmSparkError

__all__ = [
    "ConfigError",
    "Contract",
    "DataError",
    "JobConfig",
    "StrmSparkError",
    "load_contract",
    "load_job_config",
    "parse_contract",
    "parse_job_config",
    "run_job",
]

__version__ = "0.1.0"


def run_job(spark, config):
    """Run a batch job; see strm_spark.pipeline.run.run_job."""
    from strm_spark.pipeline.run import run_job as _run_job

    return _run_job(spark, config)
