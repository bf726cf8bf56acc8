"""Values as pandas UDFs see them: a null arrives as None or, in numeric batches, as NaN."""

from __future__ import annotations

from typing import Any

import pandas as pd


def is_null(value: Any) -> bool:
    """Whether a value of a pandas UDF's input is null (None, or NaN)."""
    return value is None or (isinstance(value, float) and pd.isna(value))
