"""Per-class AP of a saved model: ``python scripts/evaluate.py --model m.keras`` (= ``rfcn-tf evaluate``)."""

import sys

from rfcn_tf.cli import main

sys.exit(main(["evaluate", *sys.argv[1:]]))
