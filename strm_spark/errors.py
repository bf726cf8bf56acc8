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


class CryptoError(StrmSparkError, ValueError):
    """A keyset or cell cannot be used: an invalid keyset, a wrong key, a tampered ciphertext or
    a missing key link. The message never holds the key, the cell or its plaintext."""


class PatternError(StrmSparkError, ValueError):
    """A Java timestamp pattern that is invalid or not supported; the message says which letter
    and why."""


class FieldNotFound(StrmSparkError, KeyError):
    """A field path that is not in the contract's schema (or not of the kind asked for)."""

    def __str__(self) -> str:  # KeyError quotes its argument; this is a message
        return str(self.args[0]) if self.args else ""


class UsageError(StrmSparkError, ValueError):
    """A function of strm-spark called with arguments it does not take (a programming error in
    the caller, not bad input)."""


class TableError(StrmSparkError):
    """A Delta table cannot be created or committed to (e.g. a log folder that never gets a
    commit, or conflicts that keep winning)."""


class CommandFailed(StrmSparkError):
    """A packaged job's command failed (raised where the launcher needs an exception, as a
    Databricks wheel task does); the error itself was printed before."""
