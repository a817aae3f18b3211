"""One test harness for every Keras layer of the package (after KerasHub's ``run_layer_test``):
``run_layer_test(case, tmp_path)`` checks a layer's config round trip, its symbolic output
shapes against its eager ones, its output dtypes under ``mixed_float16`` and a ``.keras``
round trip of a model made of it. It runs under every Keras backend."""

import dataclasses

import keras
import numpy as np


@dataclasses.dataclass
class LayerCase:
    """``cls(**init_kwargs)`` called on ``inputs`` (positional numpy arrays).

    symbolic: per input, the shape of its ``keras.Input`` (None: unknown, as in the model's
    graph, which takes images of any size). mixed_inputs: per input, the dtype the model
    feeds it under ``mixed_float16`` (16-bit after a convolution; None: as given).
    mixed_outputs: the dtypes of the outputs (flattened, dicts by sorted key) under
    ``mixed_float16``.
    """

    cls: type
    init_kwargs: dict
    inputs: tuple
    symbolic: tuple
    mixed_outputs: tuple
    mixed_inputs: tuple = None


def flat(outputs):
    return [np.asarray(v) if not isinstance(v, keras.KerasTensor) else v for v in keras.tree.flatten(outputs)]


def run_layer_test(case, tmp_path):
    layer = case.cls(**case.init_kwargs)

    # get_config / from_config: the same config back.
    config = layer.get_config()
    assert case.cls.from_config(config).get_config() == config

    # Symbolic shapes: every dimension known symbolically is the eager one.
    eager = layer(*case.inputs)
    symbolic_inputs = [
        keras.Input(batch_shape=shape, dtype=x.dtype) for shape, x in zip(case.symbolic, case.inputs)
    ]
    symbolic = layer(*symbolic_inputs)
    assert keras.tree.map_structure(lambda _: 0, symbolic) == keras.tree.map_structure(lambda _: 0, eager)
    for s, e in zip(flat(symbolic), flat(eager)):
        assert len(s.shape) == e.ndim and all(a in (None, b) for a, b in zip(s.shape, e.shape)), (
            s.shape,
            e.shape,
        )
        assert s.dtype == e.dtype.name, (s.dtype, e.dtype)

    # Mixed precision: which outputs are 16-bit and which stay float32.
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        mixed_layer = case.cls(**case.init_kwargs)
        inputs = [
            x if dtype is None else x.astype(dtype)
            for x, dtype in zip(case.inputs, case.mixed_inputs or [None] * len(case.inputs))
        ]
        mixed = flat(mixed_layer(*inputs))
        assert tuple(v.dtype.name for v in mixed) == case.mixed_outputs
        assert all(v.dtype == "float32" for v in mixed_layer.weights)
    finally:
        keras.mixed_precision.set_global_policy(policy)

    # Inside a model: a .keras round trip gives the same outputs.
    model = keras.Model(symbolic_inputs, symbolic)
    path = str(tmp_path / f"{case.cls.__name__}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[-1]) is case.cls
    for a, b in zip(flat(loaded(list(case.inputs))), flat(eager)):
        np.testing.assert_array_equal(a, b)
    return eager
