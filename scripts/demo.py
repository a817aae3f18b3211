"""The demo: ``python scripts/demo.py`` (= ``rfcn-tf demo`` = ``make demo``)."""

import sys

from rfcn_tf.cli import main

sys.exit(main(["demo", *sys.argv[1:]]))
