"""``python -m glfer_edge.bench CASE_JSON OUT_JSON``: the worker that runs one case in its own process."""

import sys

from glfer_edge.bench.timing import worker_main

sys.exit(worker_main())
