"""A TF Serving-style client of an rfcn_tf export that imports only tensorflow and numpy.

    python tests/serving_client.py SAVED_MODEL_DIR OUT.npz --images a.png b.png \
        --encoded c.png d.jpg [--json response.json]

``--images``: same-size PNGs, decoded here and sent as one uint8 ``[B, H, W, 3]`` batch to
``serving_default``. ``--encoded``: image files sent as raw bytes to ``serving_bytes``.
OUT.npz holds ``default_<output>`` and ``bytes_<output>`` for the four outputs.
``--json`` also writes ``serving_default``'s result as TF Serving's REST row format
(``{"predictions": [{output: value, ...} per image]}``).
"""

import argparse
import json
import sys

import numpy as np
import tensorflow as tf

OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("saved_model")
    parser.add_argument("output")
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--encoded", nargs="+", required=True)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    loaded = tf.saved_model.load(args.saved_model)
    images = np.stack([tf.io.decode_png(tf.io.read_file(p), channels=3).numpy() for p in args.images])
    default = loaded.signatures["serving_default"](images=tf.constant(images, tf.uint8))
    encoded = tf.constant([tf.io.read_file(p).numpy() for p in args.encoded])
    from_bytes = loaded.signatures["serving_bytes"](encoded_images=encoded)

    result = {}
    for prefix, out in (("default", default), ("bytes", from_bytes)):
        if sorted(out) != sorted(OUTPUTS):
            raise SystemExit(f"{prefix}: outputs {sorted(out)}, expected {sorted(OUTPUTS)}")
        result.update({f"{prefix}_{k}": out[k].numpy() for k in OUTPUTS})
    np.savez(args.output, **result)
    if args.json:
        rows = [{k: default[k][i].numpy().tolist() for k in OUTPUTS} for i in range(len(images))]
        with open(args.json, "w") as f:
            json.dump({"predictions": rows}, f)
    # Proof that serving needs no rfcn_tf code: nothing above may have imported it.
    assert "rfcn_tf" not in sys.modules, "the SavedModel pulled in rfcn_tf"
    print("ok", {k: v.shape for k, v in result.items()})


if __name__ == "__main__":
    main()
