"""Model files of an earlier layout, read into this one.

A ``.keras`` file holds an RFCN's config, with ``format_version`` (the layout), and its
weights under the paths of the model's layer tree (Keras names each layer of a list by its
class: ``layers/conv2d_3``, ``layers/functional/layers/...``). Layout 2 (rfcn_tf 0.2–0.7)
was one flat graph; layout 3 (0.8 on) nests the convolutions and the per-RoI head as two
parts, so the same weights sit at other paths. A flat graph's layers come in Keras's
order (by depth), which for every backbone and scale gives the table ``LAYOUT_2`` below.

``read_layout_2`` builds the model of a layout-2 file's config and loads each layer from
where the flat graph kept it; every stored array is used once and every weight is set, or
it raises. The optimizer's state is not carried: its slots follow the order of the
weights, which changed. ``rfcn-tf upgrade OLD.keras NEW.keras`` writes the result.
"""

import json
import os
import tempfile
import zipfile

# layer (by role) → its path in a layout-2 file: a class's layers numbered in graph order.
LAYOUT_2 = {
    "rfcn": {
        "trunk": "layers/functional",
        "conv5": "layers/functional_1",
        "rpn_conv": "layers/conv2d",
        "rpn_objectness": "layers/conv2d_1",
        "rpn_deltas": "layers/conv2d_2",
        "reduce": "layers/conv2d_3",
        "class_maps": "layers/conv2d_4",
        "box_maps": "layers/conv2d_5",
    },
    "faster_rcnn": {
        "trunk": "layers/functional",
        "conv5": "layers/functional_1",
        "rpn_conv": "layers/conv2d",
        "rpn_objectness": "layers/conv2d_1",
        "rpn_deltas": "layers/conv2d_2",
        "class_logits": "layers/dense",
        "box_deltas": "layers/dense_1",
    },
}


def stored_layout(path):
    """The ``format_version`` of the RFCN in a ``.keras`` file (1 when it has none)."""
    with zipfile.ZipFile(path) as stored:
        config = json.loads(stored.read("config.json"))
    return config.get("config", {}).get("format_version", 1)


def read_layout_2(path):
    """A layout-2 ``.keras`` file → the RFCN it holds, in this layout, not compiled."""
    import h5py

    from rfcn_tf.config import RFCNConfig
    from rfcn_tf.model import RFCN

    with zipfile.ZipFile(path) as stored:
        saved = json.loads(stored.read("config.json"))["config"]
        weights = stored.read("model.weights.h5")
    model = RFCN(config=RFCNConfig.from_dict(saved["config"]), name=saved.get("name", "rfcn"))
    layers = {"trunk": model.trunk, "conv5": model.conv5}
    with tempfile.TemporaryDirectory() as scratch:
        h5_path = os.path.join(scratch, "model.weights.h5")
        with open(h5_path, "wb") as f:
            f.write(weights)
        with h5py.File(h5_path, "r") as h5:
            # the optimizer's state (a trained or compiled model's) is left behind
            stored_arrays = {name for name in _dataset_paths(h5) if not name.startswith("optimizer/")}
            used = set()
            for role, prefix in LAYOUT_2[model.config.head].items():
                layer = layers.get(role) or model.get_layer(role)
                try:
                    used |= _load(layer, h5, prefix, scratch)
                except ValueError as error:
                    raise ValueError(f"{path}: layer {layer.name!r} (at {prefix}): {error}") from None
    missing = sorted(stored_arrays - used)
    if missing:
        raise ValueError(f"{path}: {len(missing)} stored arrays have no place in the model: {missing[:5]}")
    return model


def _dataset_paths(group):
    import h5py

    paths = set()
    group.visit(lambda name: paths.add(name) if isinstance(group[name], h5py.Dataset) else None)
    return paths


def _load(layer, h5, prefix, scratch):
    """Loads ``layer`` from ``h5[prefix]`` (Keras's own rules: a nested model through
    ``load_weights`` of the group re-rooted, a plain layer through ``load_own_variables``)
    → the dataset paths read."""
    import h5py

    if prefix not in h5:
        raise ValueError("no weights stored there")
    group = h5[prefix]
    read = {f"{prefix}/{name}" for name in _dataset_paths(group)}
    if hasattr(layer, "layers"):
        part = os.path.join(scratch, f"{layer.name}.weights.h5")
        with h5py.File(part, "w") as out:
            for key in group:
                group.copy(group[key], out, key)
        layer.load_weights(part)
    else:
        variables = group["vars"]
        if len(variables) != len(layer.weights):
            raise ValueError(f"{len(variables)} arrays stored, the layer has {len(layer.weights)}")
        layer.load_own_variables({key: variables[key][()] for key in variables})
    return read
