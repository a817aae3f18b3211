"""Inference ms/image of the exports: TF SavedModel, LiteRT (.tflite) and onnxruntime (.onnx),
beside the Keras model's own ``predict_on_batch``.

For each ``--backbone`` (random weights with trained-like BatchNorm statistics and conv
biases, ``timing.trained_like``; small at its 192×320 scale, ResNets at 600×1000),
one image of the export's input size (``--runtimes``: which of LiteRT and onnxruntime),
``--threads`` threads in every runtime (TF's intra-
and inter-op pools, LiteRT's ``num_threads`` with its default XNNPACK delegate, onnxruntime's
``intra_op_num_threads``); warm-up, then ``--repeats`` rounds running each runtime once in
turn; medians (min–max). Also checks that each runtime's detections are the SavedModel's.

``--map``: instead, the mAP@0.5 (VOC07) of a trained ``.keras`` model on the rfcn_shapes test
split through Keras, the TFLite exports (float32, float16, dynamic int8) and ONNX, all at
the dataset's image size.

    python benchmarks/bench_exports.py --backbone small resnet50 resnet101 --repeats 5
    python benchmarks/bench_exports.py --map demo_output/rfcn_shapes.keras \\
        --data-dir demo_output/tensorflow_datasets
"""

import argparse
import os
import statistics
import tempfile

import numpy as np


def configure_threads(threads):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def config_for(backbone):
    import rfcn_tf

    if backbone == "small":
        return rfcn_tf.RFCNConfig.small(num_classes=5)
    return rfcn_tf.RFCNConfig(num_classes=20, backbone=backbone)


RUNTIMES = ("Keras", "SavedModel", "LiteRT", "onnxruntime")


def latency(backbone, repeats, warmup, threads, work, runtimes=RUNTIMES):
    import tensorflow as tf
    from timing import interleaved_times, trained_like

    import rfcn_tf
    from rfcn_tf.export import export_onnx, export_tflite
    from rfcn_tf.export.files import default_input_size
    from rfcn_tf.loading import runtime

    model = trained_like(rfcn_tf.RFCN(config=config_for(backbone)))
    size = default_input_size(model.config)
    saved = tf.saved_model.load(rfcn_tf.export_saved_model(model, os.path.join(work, backbone)))
    serving = saved.signatures["serving_default"]
    pixels = np.random.default_rng(0).integers(0, 256, (1, *size, 3), dtype=np.uint8)
    image = pixels.astype(np.float32)  # the same pixels: serving_default takes uint8
    runs = {
        "Keras": lambda: model.predict_on_batch(pixels),
        "SavedModel": lambda: {k: v.numpy() for k, v in serving(images=tf.constant(pixels)).items()},
    }
    if "LiteRT" in runtimes:
        tflite = export_tflite(model, os.path.join(work, backbone + "_tflite"))
        runs["LiteRT"] = lambda r=runtime(os.path.join(tflite, "model.tflite"), "tflite", threads): r(image)
    if "onnxruntime" in runtimes:
        onnx = export_onnx(model, os.path.join(work, backbone + "_onnx"))
        runs["onnxruntime"] = lambda r=runtime(os.path.join(onnx, "model.onnx"), "onnx", threads): r(image)
    served = runs["SavedModel"]()  # TF Serving's outputs: boxes normalised to the image
    n = int(served["num_detections"][0])
    boxes = served["detection_boxes"][0, :n] * np.tile(size, 2)
    for name in [r for r in ("LiteRT", "onnxruntime") if r in runs]:
        out = runs[name]()
        # Random weights give near-tied scores, whose order a 1e-6 difference may swap: compare
        # the sorted scores, and count the boxes found within 1 px at the same rank.
        scores = np.abs(out["confidence"][0, :n] - served["detection_scores"][0, :n]).max()
        placed = np.all(np.abs(out["boxes"][0, :n] - boxes) <= 1.0, axis=-1).mean()
        print(
            f"  {name}: {int(out['num_detections'][0])} detections (SavedModel {n}); scores "
            f"within {scores:.1e}; {placed:.0%} of boxes within 1 px at the same rank"
        )
    times = interleaved_times({name: (run, ()) for name, run in runs.items()}, repeats, warmup)
    for name, t in times.items():
        print(
            f"{backbone:<10} {size[0]}x{size[1]:<5} {name:<12} {statistics.median(t):>9.1f} "
            f"({min(t):.1f}–{max(t):.1f})"
        )
    ratio = statistics.median(times["SavedModel"]) / statistics.median(times["Keras"])
    print(f"{backbone:<10} SavedModel serving_default / Keras predict_on_batch: {ratio:.3f}")


def accuracy(model_path, data_dir, dataset, split, threads, work):
    import keras

    from rfcn_tf.data import load_examples, make_pipeline
    from rfcn_tf.evaluation import evaluate_model
    from rfcn_tf.export import export_onnx, export_tflite
    from rfcn_tf.export.files import QUANTIZATIONS
    from rfcn_tf.loading import keras_detector, load_detector

    model = keras.models.load_model(model_path)
    examples, names = load_examples(dataset, split, data_dir=data_dir)
    first = next(iter(examples.take(1)))["image"].shape
    size = (int(first[0]), int(first[1]))
    config = model.config
    data = make_pipeline(
        examples, 1, min_side=config.min_side, max_side=config.max_side, bounding_box_format="yxyx"
    )
    detectors = {"Keras": keras_detector(model)[0]}
    for q in QUANTIZATIONS:
        path = export_tflite(model, os.path.join(work, f"tflite_{q}"), input_size=size, quantization=q)
        detectors[f"TFLite {q}"] = load_detector(path)[0]
        print(f"  TFLite {q}: {os.path.getsize(os.path.join(path, 'model.tflite')) / 1e6:.1f} MB")
    detectors["ONNX"] = load_detector(export_onnx(model, os.path.join(work, "onnx"), input_size=size))[0]
    print(f"{dataset} {split}, images {size[0]}x{size[1]}, model {model_path}")
    for name, detector in detectors.items():
        result = evaluate_model(detector, data, class_names=names, original_scale=True)
        print(f"{name:<20} mAP@0.5 {result['mAP']:.4f}  detections {sum(result['num_detections'].values())}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backbone", nargs="+", default=["small"], choices=("small", "resnet50", "resnet101")
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument(
        "--runtimes",
        nargs="*",
        default=list(RUNTIMES[2:]),
        choices=RUNTIMES[2:],
        help="the exports timed beside Keras and the SavedModel",
    )
    parser.add_argument(
        "--map",
        metavar="MODEL",
        default=None,
        help="a trained .keras model: report mAP per export instead of speed",
    )
    parser.add_argument("--dataset", default="rfcn_shapes")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)

    configure_threads(args.threads)
    from timing import environment

    work = tempfile.mkdtemp(prefix="bench_exports_")
    print(f"threads {args.threads}  {environment()}")
    if args.map:
        accuracy(args.map, args.data_dir, args.dataset, args.split, args.threads, work)
        return
    print(f"median ms/image of {args.repeats} after {args.warmup} warm-up (min–max)")
    for backbone in args.backbone:
        latency(backbone, args.repeats, args.warmup, args.threads, work, args.runtimes)


if __name__ == "__main__":
    main()
