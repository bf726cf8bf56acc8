"""STRM Privacy's batch jobs: its job JSON, contract and schema run unchanged (`config`)."""

from strm_spark.compat.strm.config import load_strm_job

__all__ = ["load_strm_job"]
