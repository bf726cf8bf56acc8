"""Event timestamps: Java DateTimeFormatter patterns tokenized and checked on the driver
(`pattern`), compiled once into a plan (`plan`), and parsed in Spark without Python UDFs
(`parse`)."""

from strm_spark.errors import PatternError
from strm_spark.timestamps.parse import parse_event_time
from strm_spark.timestamps.plan import check_pattern

__all__ = ["PatternError", "check_pattern", "parse_event_time"]
