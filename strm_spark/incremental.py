"""Moved to `strm_spark.pipeline.incremental`; kept so existing imports keep working."""

from .pipeline.incremental import FILES_SCHEMA, Batch, FileLog, SourceFile, list_source_files  # noqa: F401
