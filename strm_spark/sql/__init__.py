"""Decrypt on the fly in Spark SQL: the strm_* functions (`functions`) and decrypting views."""

from strm_spark.sql.functions import decrypting_view, register, register_job_views

__all__ = ["decrypting_view", "register", "register_job_views"]
