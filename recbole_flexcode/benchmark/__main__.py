"""``python -m recbole_flexcode.benchmark``: see :mod:`recbole_flexcode.benchmark.runner`."""

import sys

from recbole_flexcode.benchmark.runner import main

if __name__ == "__main__":
    sys.exit(main())
