"""``python -m crossmodal_demo``: the command line (see :mod:`crossmodal_demo.cli.main`)."""

import os
import sys

# Tokenizers' own thread pool fights torch for 2 cores and warns after fork; torch threads suffice.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from crossmodal_demo.cli.main import main  # noqa: E402

sys.exit(main())
