"""Train R-FCN: ``python scripts/train.py --dataset rfcn_shapes --small`` (= ``rfcn-tf train``)."""

import sys

from rfcn_tf.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
