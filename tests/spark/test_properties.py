"""Property: whatever the rows and the config, every input row is encrypted or rejected, and
the run ends without an unhandled error.

The examples run as successive runs of one job group into one set of outputs in overwrite mode:
each run replaces the encrypted, derived and rejected tables (so their counts are the run's),
while keys and data subjects accumulate and later examples reuse earlier ones' keys."""

from __future__ import annotations

import csv
import io

from helpers import job_config
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from strm_spark.pipeline.run import run_job

# Field text: commas, quotes, semicolons, non-ASCII; no line breaks (a quoted line break splits
# a record unless the source sets multiLine).
TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
DATES = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),  # includes years < 1000
    TEXT,
    st.just(""),
)
ROW = st.fixed_dictionaries(
    {
        "InvoiceNo": TEXT,
        "StockCode": TEXT,
        "Description": TEXT,
        "Quantity": st.one_of(st.integers(-(10**12), 10**12).map(str), TEXT),
        "InvoiceDate": DATES,
        "UnitPrice": TEXT,
        "CustomerID": st.one_of(st.just(""), st.integers(10000, 10040).map(str), TEXT),
        "Country": TEXT,
    }
)
FIELDS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
CONFIG = st.fixed_dictionaries(
    {
        "zone": st.sampled_from(
            ["UTC", "Europe/Amsterdam", "America/St_Johns", "Pacific/Kiritimati"]
        ),
        "levels": st.lists(st.integers(0, 3), max_size=3, unique=True),
        "derived_levels": st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True),
        "consent_type": st.sampled_from(["CUMULATIVE", "GRANULAR"]),
    }
)


# No shrinking: each example is a Spark job; a failure prints the example as generated.
@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(ROW, min_size=1, max_size=40), cfg=CONFIG)
def test_every_row_is_encrypted_or_rejected(spark, tmp_path, rows, cfg):
    root = tmp_path / "job"  # the same for every example (tmp_path is not renewed per example)
    root.mkdir(exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    (root / "in.csv").write_text(buf.getvalue(), encoding="utf-8")
    config = job_config(
        root / "in.csv",
        root / "out",
        consent={"default_levels": cfg["levels"]},
        timestamp={
            "field": "InvoiceDate",
            "pattern": "yyyy-MM-dd HH:mm:ss",
            "default_time_zone": cfg["zone"],
        },
    )
    doc_derived = config.derived[0]
    config = config.__class__(
        **{
            **config.__dict__,
            "write_mode": "overwrite",
            "derived": (
                doc_derived.__class__(
                    **{
                        **doc_derived.__dict__,
                        "consent_type": cfg["consent_type"],
                        "consent_levels": tuple(cfg["derived_levels"]),
                    }
                ),
            ),
        }
    )
    summary = run_job(spark, config)
    assert summary.rows_read == len(rows)
    assert summary.rows_encrypted + summary.rows_rejected == len(rows)
    assert (
        spark.read.format("delta").load(str(root / "out" / "encrypted")).count()
        == summary.rows_encrypted
    )
    assert (
        spark.read.format("delta").load(str(root / "out" / "rejected")).count()
        == summary.rows_rejected
    )
