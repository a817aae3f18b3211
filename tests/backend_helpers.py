"""Running a function under another Keras backend: each backend needs its own process
(Keras picks it at import), so ``on_backend`` starts one, calls ``module:function`` there
on numpy arrays and brings its dict of arrays back."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
BACKENDS = ("tensorflow", "jax", "torch")

_RUNNER = """
import importlib, json, sys
import numpy as np
module, name = sys.argv[1].split(":")
fn = getattr(importlib.import_module(module), name)
kwargs = dict(np.load(sys.argv[2], allow_pickle=False))
kwargs.update(json.loads(sys.argv[4]))
out = fn(**kwargs)
np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in out.items()})
"""


def on_backend(backend, target, tmp_path, options=None, timeout=600, **arrays):
    """``target`` ("tests.module:function") called under ``KERAS_BACKEND=backend`` with
    ``arrays`` (numpy) and ``options`` (JSON-able keywords) → its returned dict as numpy
    arrays. The child's stderr is shown when it fails."""
    tmp_path = pathlib.Path(tmp_path)
    tag = f"{target.replace(':', '.')}.{backend}"
    inputs, outputs = tmp_path / f"{tag}.in.npz", tmp_path / f"{tag}.out.npz"
    np.savez(inputs, **arrays)
    env = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, target, str(inputs), str(outputs), json.dumps(options or {})],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"{target} under {backend} failed:\n{result.stderr[-6000:]}")
    with np.load(outputs) as data:
        return {k: data[k] for k in data.files}
