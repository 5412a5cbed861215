"""Command line: python run_flexcode.py --model=FlexCode --dataset=ml-100k [--config_files=...] [--key=value ...]"""

import sys

from recbole_flexcode.quick_start import main

if __name__ == "__main__":
    sys.exit(main())
