"""`python -m strm_spark.cli`."""

import sys

from strm_spark.cli.main import main

sys.exit(main())
