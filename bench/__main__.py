"""``python -m bench`` (what ``bench/run`` execs)."""

import sys

from bench.cli import main

sys.exit(main())
