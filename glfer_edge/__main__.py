import sys

from glfer_edge.cli import main

sys.exit(main())
