"""TFLite and ONNX exports: the model as a fixed-size graph of portable ops, converted.

``portable_model`` rebuilds a model with ``RFCNConfig.portable`` (bilinear crops by gather,
NMS one image at a time, the resize as matrix products: ops TFLite has built in and ONNX
expresses) and the same weights. ``portable_function`` traces it for one image of a size
fixed at export (the model's own resize runs inside, so any ``input_size`` works) as
``rfcn_tf.export.folding`` traces every export: weights as constants, BatchNorms folded.
``to_tflite`` and ``to_onnx`` convert that function; ``export_tflite`` / ``export_onnx``
write ``<export_dir>/<version>/model.tflite`` (or ``model.onnx``) with ``labels.txt``,
``rfcn_config.json`` and ``export.json`` (format, input size, quantisation or opset, ops)
beside it. Their default directories sit next to the SavedModel's, not inside it, so TF
Serving never sees a version it cannot load.
"""

import numbers
import tempfile

import keras
import tensorflow as tf

from rfcn_tf.export.files import DEFAULT_DIRS, MODEL_FILES, ONNX_OPSET, QUANTIZATIONS, default_input_size
from rfcn_tf.export.folding import constant_function
from rfcn_tf.export.logs import quiet_logs
from rfcn_tf.export.versions import as_rfcn, names_and_config, write_model_file, write_version
from rfcn_tf.keras_internals import tflite_op_details
from rfcn_tf.model import RFCN

OUTPUTS = ("boxes", "confidence", "labels", "num_detections")
MAX_INPUT_SIDE = 8192


def export_tflite(
    model,
    export_dir=DEFAULT_DIRS["tflite"],
    version=None,
    name=None,
    input_size=None,
    quantization="none",
    class_names=None,
    overwrite=False,
):
    """Write ``model`` as ``<export_dir>[/<name>]/<version>/model.tflite`` (TFLite built-in
    ops only: it runs in the plain LiteRT interpreter) and return the version directory.

    The file takes one ``images [1, H, W, 3]`` float32 RGB 0..255 image of ``input_size``
    (default: the model's scale, ``(min_side, max_side)``) and returns ``boxes [1, M, 4]``
    (pixels of that image, the model's ``bounding_box_format``), ``confidence``, ``labels``
    (-1 padding) and ``num_detections``. quantization: ``"none"``, ``"float16"`` or
    ``"dynamic_int8"``. Other arguments as ``export_saved_model``.
    """

    def convert(model, size):
        data = to_tflite(model, size, quantization)
        return data, {"quantization": quantization, "ops": tflite_ops(data)}

    return _export_file(
        "tflite", convert, model, export_dir, version, name, input_size, class_names, overwrite
    )


def export_onnx(
    model,
    export_dir=DEFAULT_DIRS["onnx"],
    version=None,
    name=None,
    input_size=None,
    opset=ONNX_OPSET,
    class_names=None,
    overwrite=False,
):
    """Write ``model`` as ``<export_dir>[/<name>]/<version>/model.onnx`` (``tf2onnx``, ONNX
    ``opset``; runs in onnxruntime) and return the version directory. Inputs, outputs and
    the other arguments as ``export_tflite``."""

    def convert(model, size):
        proto = to_onnx(model, size, opset)
        return proto.SerializeToString(), {
            "opset": opset,
            "ops": sorted({node.op_type for node in proto.graph.node}),
        }

    return _export_file("onnx", convert, model, export_dir, version, name, input_size, class_names, overwrite)


def _export_file(kind, convert, model, export_dir, version, name, input_size, class_names, overwrite):
    """``convert(model, input_size)`` → (file bytes, ``export.json`` fields) first, so a model
    that cannot be converted writes nothing; then the version directory (``export_tflite``)."""
    model = as_rfcn(model)
    names, config = names_and_config(model, class_names)
    size = check_input_size(input_size, model.config)
    data, fields = convert(model, size)
    info = {"format": kind, "input_size": list(size), **fields}
    return write_version(
        export_dir,
        name,
        version,
        overwrite,
        lambda d: write_model_file(d, MODEL_FILES[kind], data, names, config, info),
    )


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


def portable_function(model, input_size):
    """A ``tf.function``: ``images [1, H, W, 3]`` float32 RGB 0..255 → the detections dict
    (``OUTPUTS``), computed by ``portable_model(model)`` with its weights as constants and
    its BatchNorms folded (``rfcn_tf.export.folding``)."""
    height, width = input_size
    spec = tf.TensorSpec([1, height, width, 3], tf.float32, name="images")
    return constant_function(portable_model(model), spec)


def to_tflite(model, input_size, quantization="none"):
    """The model as ``.tflite`` bytes: TFLite built-in ops only (no Flex), one signature
    ``serving_default``: ``images`` → ``OUTPUTS``. quantization: ``"none"`` (float32),
    ``"float16"`` (weights stored as float16) or ``"dynamic_int8"`` (int8 weights,
    activations quantised on the fly)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; got {quantization!r}")
    function = portable_function(model, input_size)
    with tempfile.TemporaryDirectory() as directory, quiet_logs():
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
    function = portable_function(model, input_size)
    try:
        with quiet_logs("tf2onnx"):
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


def _first_errors(error, limit=5):
    lines = [line.strip() for line in str(error).splitlines() if "error:" in line]
    return "; ".join(dict.fromkeys(lines[:limit])) or str(error).splitlines()[0]
