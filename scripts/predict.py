"""Detect objects in image files: ``python scripts/predict.py --model M imgs/`` (= ``rfcn-tf predict``)."""

import sys

from rfcn_tf.cli import main

sys.exit(main(["predict", *sys.argv[1:]]))
