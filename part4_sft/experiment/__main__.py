"""``python -m part4_sft.experiment``: the experiment mode's command line (``cli.main``)."""

import sys

from .cli import main

sys.exit(main())
