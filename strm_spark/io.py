"""Moved to `strm_spark.pipeline.read`; kept so existing imports keep working."""

from .pipeline.read import BLOCK, CORRUPT, FILE, ROW_ID, read_source  # noqa: F401
