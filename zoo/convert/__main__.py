"""``python -m zoo.convert SRC [SRC ...] [--out DIR] [--overwrite]``: the same as ``zoo convert``."""
import sys

from ..cli import main

sys.exit(main(["convert", *sys.argv[1:]]))
