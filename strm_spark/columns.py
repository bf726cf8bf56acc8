"""Every internal column the pipeline adds to rows (all start with `__` and never reach an
output), and how to name a top-level column whatever characters its name has."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

# Read: where each row comes from, and Spark's text of a record it could not parse.
CORRUPT = "__corrupt"
FILE = "__file"
BLOCK = "__block"
ROW_ID = "__mid"
# Where each row comes from, in input order (for outputs that keep it, like STRM's CSV).
ORDER_COLUMNS = (FILE, BLOCK, ROW_ID)
RAW_PREFIX = "__raw_"
KAFKA_MS = "__kafka_ms"  # a Kafka record's timestamp, standing in for a missing timestamp field  # the text as read of a typed field, for the rejected table

# Validate: why a row is rejected, its event time, UTC day and consent.
REASONS = "__reasons"
EPOCH_MS = "__epoch_ms"
DAY = "__day"
CONSENT = "__consent"
TOMBSTONED = "__tombstoned"  # the subject was forgotten before the row's event time

# The scan: a rejected row's every column, kept with the scan's groups (so the rejected table
# needs no second read of the source).
REJECTED_ROW = "__rejected_row"

# Keys: the key-field value and data subject of a row, and the key matched to it.
KEY_VALUE = "__kv"
SUBJECT = "__subject"
KEY_LINK = "__keyLink"
KEYSET = "__keyset"
EXPIRES_AT = "__expiresAt"

# Encrypt: the flat plaintext and ciphertext columns of the PII fields.
ENC_CORRUPT = "__enc_corrupt"


def pii_column(index: int) -> str:
    """Name of the flat column holding the plaintext of the contract's index-th PII field."""
    return f"__pii{index}"


def enc_column(index: int) -> str:
    """Name of the flat column holding the ciphertext of the contract's index-th PII field."""
    return f"__enc{index}"


def col(name: str) -> Column:
    """A top-level column, whatever characters its name has."""
    return F.col(f"`{name}`")
