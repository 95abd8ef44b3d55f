"""``python -m tinysam_annotate.cli``: the same as the ``tinysam-annotate`` command."""

import sys

from . import main

sys.exit(main())
