"""``python -m sparsehalo ...``: the command line (:mod:`sparsehalo.cli`)."""

import sys

from .cli import main

sys.exit(main())
