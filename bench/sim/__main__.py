"""``python -m bench.sim``: the same as ``fos-sim``."""

import sys

from bench.sim.cli import main

sys.exit(main())
