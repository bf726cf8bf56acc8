"""Event timestamps: Java DateTimeFormatter patterns checked on the driver and parsed in Spark."""

from strm_spark.timestamps.parse import PatternError, check_pattern, parse_event_time

__all__ = ["PatternError", "check_pattern", "parse_event_time"]
