"""The batch job: see `strm_spark.pipeline` (its stages) and `strm_spark.pipeline.run`."""

from .pipeline.run import run_job  # noqa: F401
from .pipeline.summary import RunSummary  # noqa: F401
from .pipeline.write import DATA_SUBJECTS_SCHEMA  # noqa: F401
