"""Job configuration: the typed, frozen model of a job (`load`), the YAML/JSON cursor that
reports errors by path (`strm_spark.document`), and the checks a run would otherwise fail on (`preflight`)."""

from strm_spark.config.load import load_job_config, parse_job_config
from strm_spark.config.model import JobConfig

__all__ = ["JobConfig", "load_job_config", "parse_job_config"]
