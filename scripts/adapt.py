"""Adapt a model to a new site's photos: ``python scripts/adapt.py --model M photos/ --output A.keras``
(= ``rfcn-tf adapt``)."""

import sys

from rfcn_tf.cli import main

sys.exit(main(["adapt", *sys.argv[1:]]))
