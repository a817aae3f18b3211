"""The model as a fixed-size graph of portable ops, converted to TFLite or ONNX.

``portable_model`` rebuilds a model with ``RFCNConfig.portable`` (bilinear crops by gather,
NMS one image at a time, the resize as matrix products: ops TFLite has built in and ONNX
expresses) and the same weights. ``frozen_function`` traces it for one image of a size
fixed at export (the model's own resize runs inside, so any ``input_size`` works) with the
weights as constants, which lets the converters fold BatchNorm into the convolutions.
``to_tflite`` and ``to_onnx`` convert that function.
"""

import contextlib
import logging
import numbers
import tempfile

import keras
import tensorflow as tf

from rfcn_tf.export_files import (  # noqa: F401 (public here as before)
    ONNX_OPSET,
    QUANTIZATIONS,
    default_input_size,
)
from rfcn_tf.keras_internals import tflite_op_details
from rfcn_tf.model import RFCN

OUTPUTS = ("boxes", "confidence", "labels", "num_detections")
MAX_INPUT_SIDE = 8192


def portable_model(model):
    """``model`` rebuilt with ``portable=True``, computing in float32 (a mixed-precision
    model's variables are float32 already), with its weights; ``model`` itself if it is
    that already."""
    if model.config.portable and model.compute_dtype == "float32":
        return model
    config = model.get_config()
    config["config"] = {**config["config"], "portable": True}
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        twin = RFCN.from_config(config)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    twin.set_weights(model.get_weights())
    return twin


def check_input_size(input_size, config):
    """``input_size`` ((height, width) or None → ``default_input_size``) as two ints in
    1..``MAX_INPUT_SIDE``; ValueError otherwise."""
    if input_size is None:
        return default_input_size(config)
    size = tuple(input_size)
    if len(size) != 2 or not all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and 1 <= v <= MAX_INPUT_SIDE for v in size
    ):
        raise ValueError(
            f"input_size must be (height, width), two integers in 1..{MAX_INPUT_SIDE}; got {input_size!r}"
        )
    return tuple(int(v) for v in size)


def frozen_function(model, input_size):
    """A ``tf.function``: ``images [1, H, W, 3]`` float32 RGB 0..255 → the detections dict
    (``OUTPUTS``), computed by ``portable_model(model)`` with its weights frozen in."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    height, width = input_size
    twin = portable_model(model)
    spec = [tf.TensorSpec([1, height, width, 3], tf.float32, name="images")]

    @tf.function(input_signature=spec)
    def detect(images):
        return twin({"images": images, "image_sizes": None}, training=False)

    frozen = convert_variables_to_constants_v2(detect.get_concrete_function())
    # The frozen function returns its outputs flat, in the sorted order of the dict's keys.
    return tf.function(lambda images: dict(zip(sorted(OUTPUTS), frozen(images))), input_signature=spec)


def to_tflite(model, input_size, quantization="none"):
    """The model as ``.tflite`` bytes: TFLite built-in ops only (no Flex), one signature
    ``serving_default``: ``images`` → ``OUTPUTS``. quantization: ``"none"`` (float32),
    ``"float16"`` (weights stored as float16) or ``"dynamic_int8"`` (int8 weights,
    activations quantised on the fly)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; got {quantization!r}")
    function = frozen_function(model, input_size)
    with tempfile.TemporaryDirectory() as directory, _quiet():
        # Through a SavedModel: the converter keeps the signature's input and output names.
        tf.saved_model.save(
            tf.Module(), directory, signatures={"serving_default": function.get_concrete_function()}
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(directory, ["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        try:
            return converter.convert()
        except Exception as error:  # the converter raises its own ConverterError
            raise ValueError(
                "this model cannot be written with TFLite's built-in ops "
                f"(config backbone={model.config.backbone!r}, head={model.config.head!r}): "
                f"{_first_errors(error)}"
            ) from error


def to_onnx(model, input_size, opset=ONNX_OPSET):
    """The model as an ONNX ``ModelProto`` (``tf2onnx``, ``opset``): input ``images``,
    outputs ``OUTPUTS``."""
    try:
        import tf2onnx
    except ImportError as error:
        raise ModuleNotFoundError(
            "ONNX export needs tf2onnx: pip install 'rfcn_tf[onnx]'", name="tf2onnx"
        ) from error
    function = frozen_function(model, input_size)
    try:
        with _quiet("tf2onnx"):
            proto, _ = tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=opset
            )
    except Exception as error:
        raise ValueError(
            f"tf2onnx could not convert this model at opset {opset}: {_first_errors(error)}"
        ) from error
    # tf2onnx leaves an op it cannot express as the TF op (and only logs it): the checker
    # refuses such a graph.
    import onnx

    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise ValueError(
            f"ONNX opset {opset} cannot express this model "
            f"({str(error).splitlines()[0]}); export with --opset {ONNX_OPSET} "
            "(opset=...) or newer"
        ) from error
    return proto


def tflite_ops(model_bytes):
    """The op names of a ``.tflite`` model (built-ins by name; Flex ops start with "Flex")."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    interpreter = Interpreter(model_content=model_bytes)
    return sorted({op["op_name"] for op in tflite_op_details(interpreter)})


@contextlib.contextmanager
def _quiet(*names):
    """Hide the converters' INFO lines (TensorFlow's "Assets written to …" about the temporary
    SavedModel, tf2onnx's optimiser report): warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", *names)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _first_errors(error, limit=5):
    lines = [line.strip() for line in str(error).splitlines() if "error:" in line]
    return "; ".join(dict.fromkeys(lines[:limit])) or str(error).splitlines()[0]
