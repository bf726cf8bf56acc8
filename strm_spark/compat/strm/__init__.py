"""STRM Privacy's batch jobs: its job JSON, contract and schema run unchanged (`config`), and
its one-file CSV outputs (`outputs`, the storage layer's `strm-csv` sink)."""

from strm_spark.compat.strm import outputs  # noqa: F401  (registers the strm-csv sink)
from strm_spark.compat.strm.config import load_strm_job

__all__ = ["load_strm_job"]
