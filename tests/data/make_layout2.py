"""Writes ``layout2_<head>.keras`` and ``layout2_<head>.npz``: small models saved by rfcn_tf
0.7.0 (model-file layout 2, one flat graph) and what 0.7.0 computed with them, for
``tests/test_model_files.py``. Run once with rfcn_tf 0.7.0 on the path (commit 348f4d0):

    git worktree add /tmp/v070 348f4d0
    PYTHONPATH=/tmp/v070 python tests/data/make_layout2.py

Each variable holds a few distinct values (so the zip compresses) and every layer different
ones (so a weight loaded into the wrong layer changes the outputs). The outputs are the
convolutions' (RPN and score maps, or conv4) and the per-RoI head's on fixed boxes: no NMS,
so no near-tie can make them differ between CPUs.
"""

import os
import zipfile

import keras
import numpy as np

import rfcn_tf
from rfcn_tf import RFCN, RFCNConfig

HERE = os.path.dirname(os.path.abspath(__file__))
BOXES = np.array([[[4, 6, 40, 50], [20, 10, 60, 90], [0, 0, 64, 96]]], np.float32)


def image():
    return np.random.default_rng(7).integers(0, 256, (1, 64, 96, 3)).astype(np.float32)


def main():
    assert rfcn_tf.__version__ == "0.7.0", rfcn_tf.__version__
    for head in ("rfcn", "faster_rcnn"):
        model = RFCN(config=RFCNConfig.small(num_classes=2, head=head, min_side=64, max_side=96))
        rng = np.random.default_rng(0)
        for variable in model.weights:
            shape, name = variable.shape, variable.path
            if "variance" in name or "gamma" in name:
                value = 0.5 + rng.integers(0, 2, shape) / 2
            else:
                value = rng.integers(-1, 2, shape) * 0.2 / np.sqrt(max(1, np.prod(shape[:-1])) / 64)
            variable.assign(value.astype(np.float32))
        path = os.path.join(HERE, f"layout2_{head}.keras")
        model.save(path)
        with zipfile.ZipFile(path) as stored:
            members = {name: stored.read(name) for name in stored.namelist()}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as deflated:
            for name, data in members.items():
                deflated.writestr(name, data)
        raw = model.features_model({"images": image(), "image_sizes": None}, training=False)
        rois = keras.ops.convert_to_tensor(BOXES * keras.ops.convert_to_numpy(raw["scales"])[0, 0])
        maps = {name: raw[name] for name in model._map_names}
        logits, deltas = model.roi_model({**maps, "rois": rois})
        arrays = {name: keras.ops.convert_to_numpy(raw[name]) for name in ("rpn_logits", "rpn_deltas", *maps)}
        arrays.update(
            class_logits=keras.ops.convert_to_numpy(logits), box_deltas=keras.ops.convert_to_numpy(deltas)
        )
        np.savez_compressed(os.path.join(HERE, f"layout2_{head}.npz"), **arrays)
        print(path, os.path.getsize(path))


if __name__ == "__main__":
    main()
