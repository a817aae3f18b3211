"""Write a SavedModel for TF Serving: ``python scripts/export.py --model m.keras`` (= ``rfcn-tf export``)."""

import sys

from rfcn_tf.cli import main

sys.exit(main(["export", *sys.argv[1:]]))
