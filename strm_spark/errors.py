"""One exception hierarchy for strm-spark.

Messages name files, field paths, rules and counts; never row values, plaintext or keys.
"""

from __future__ import annotations


class StrmSparkError(Exception):
    """Base class of every error strm-spark raises on purpose."""


class ConfigError(StrmSparkError):
    """A job config or contract is invalid; raised before Spark does any work."""

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {message}")


class DataError(StrmSparkError):
    """Input data cannot be processed as a whole (e.g. a file with the wrong header)."""


class SecretError(StrmSparkError):
    """A referenced secret (env var or file) is missing or unusable."""


class KeyStoreError(StrmSparkError):
    """The key store is missing, corrupt or inconsistent."""


class SubjectsError(StrmSparkError):
    """A data subjects request (list, export, forget, purge-expired) cannot be carried out."""


class ReadOnlyError(StrmSparkError):
    """`strm-spark sql` was given a statement that writes, without --allow-writes."""


class QueryError(StrmSparkError):
    """`strm-spark sql`: the statement does not parse or does not resolve (a user error)."""


class UnsupportedError(StrmSparkError):
    """Something this session or this storage cannot do (docs/deployment.md lists them)."""
