"""Shared fixtures: one local SparkSession with Delta for the whole test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BLOGPOST = SHARED / "data" / "strm-blogpost"
UCI_CSV = BLOGPOST / "uci_online_retail.csv"
UCI_CONTRACT = REPO / "conf" / "online_retail_contract.yaml"


def require_shared() -> None:
    if not UCI_CSV.is_file():
        pytest.skip(f"the STRM reference data is not beside the repo ({BLOGPOST})")


@pytest.fixture(scope="session")
def spark():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from strm_spark.session import get_spark

    session = get_spark("strm-spark-tests", master="local[2]", shuffle_partitions=2)
    yield session
    session.stop()
