"""Decrypt on the fly in Spark SQL: strm-spark's SQL functions (`functions`) and decrypting
views over the encrypted table (`views`)."""

from strm_spark.sql.functions import register
from strm_spark.sql.views import decrypting_view, register_job_views

__all__ = ["decrypting_view", "register", "register_job_views"]
