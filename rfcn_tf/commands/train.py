"""``rfcn-tf train``: a dataset → a trained model, with the one training recipe
(``training.make_optimizer``; AdamW from random init, the paper's SGD with loaded
backbone weights)."""

import argparse
import contextlib
import json
import os
import sys
import zipfile

from rfcn_tf.anchor_fit import ANCHOR_MODES, LOW_RECALL, MAX_IMAGES
from rfcn_tf.config import BACKBONES, HEADS, INPUT_NORMALIZATIONS, SMALL_BACKBONE_STRIDES, SMALL_TRAIN_STRIDE
from rfcn_tf.data.arguments import (
    add_augment_arguments,
    add_dataset_arguments,
    batches_from_args,
    examples_from_args,
    scale_from_args,
    uses_tf_data,
)
from rfcn_tf.decoding import add_decoding_arguments, decoding_args, decoding_changes
from rfcn_tf.distribution import POLICIES, STRATEGIES
from rfcn_tf.evaluation.metrics import METRICS
from rfcn_tf.training import OPTIMIZERS, SCHEDULES


def add_arguments(parser):
    add_dataset_arguments(parser, default_split="train")
    add_augment_arguments(parser)
    parser.add_argument(
        "--val-split", default=None, help="split for val_mAP after each --eval-every epochs (default: none)"
    )
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="resnet101", choices=BACKBONES)
    model.add_argument(
        "--weights",
        default=None,
        help="backbone weights: 'imagenet' or a weights file (default: random init)",
    )
    model.add_argument("--head", default="rfcn", choices=HEADS)
    model.add_argument(
        "--small",
        action="store_true",
        help="the demo's CPU-sized configuration (RFCNConfig.small: small backbone "
        f"at stride {SMALL_TRAIN_STRIDE}, k=3, small anchors, images at 192 px)",
    )
    model.add_argument(
        "--feature-stride",
        type=int,
        choices=sorted({16, *SMALL_BACKBONE_STRIDES}),
        default=None,
        help=f"output stride of the backbone: 16 (the ResNets'), or {SMALL_TRAIN_STRIDE} "
        "(the default with --small), for objects of only one or two stride-16 cells",
    )
    model.add_argument(
        "--input-normalization",
        default=None,
        choices=INPUT_NORMALIZATIONS,
        help="backbone (the default): the ResNet's input convention, what --weights "
        "imagenet expects; per_image: each image standardised by its own colour "
        "statistics, for photos of sites that look different (docs/your_data.md)",
    )
    model.add_argument(
        "--anchors",
        default="default",
        choices=ANCHOR_MODES,
        help="default: the configuration's anchor scales × ratios; auto: chosen "
        "from the training boxes at the model's scale (as many scales and "
        "ratios, rfcn_tf.anchor_fit). Both read the boxes of up to "
        f"{MAX_IMAGES} training images first, print the anchor recall and "
        f"warn below {LOW_RECALL}",
    )
    model.add_argument(
        "--init",
        default=None,
        help="start from this .keras model (fine-tuning; the class head is replaced "
        "when the dataset has a different number of classes)",
    )
    model.add_argument(
        "--freeze-stages",
        type=int,
        default=None,
        help="freeze backbone stages 1..N (2 = conv1+res2, the paper's choice)",
    )
    add_decoding_arguments(parser)  # stored in the model: validation, saved models, exports
    fit = parser.add_argument_group("training recipe")
    fit.add_argument("--epochs", type=int, default=10)
    fit.add_argument(
        "--optimizer",
        default="auto",
        choices=OPTIMIZERS,
        help="auto (default): SGD with momentum (the paper's) when --weights or "
        "--init is given, AdamW from random init",
    )
    fit.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    fit.add_argument(
        "--schedule",
        default="step",
        choices=SCHEDULES,
        help="step (default): ÷10 after --lr-drop-epochs, or at 2/3 of the run "
        "(SGD) / 7/8 (AdamW); cosine: to 0 over the run; constant",
    )
    fit.add_argument(
        "--lr-drop-epochs",
        type=float,
        nargs="*",
        default=None,
        help="epochs after which the step schedule divides the learning rate by 10",
    )
    fit.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps (default 0)")
    fit.add_argument(
        "--weight-decay", type=float, default=None, help="default 5e-4 for SGD (the paper's), 1e-4 for AdamW"
    )
    fit.add_argument("--clipnorm", type=float, default=None)
    fit.add_argument("--metric", default="voc07", choices=METRICS, help="the val_mAP metric")
    fit.add_argument("--eval-every", type=int, default=1)
    fit.add_argument(
        "--tensorboard-images",
        type=int,
        default=4,
        help="with --val-split: validation images drawn with ground truth and "
        "detections into OUTPUT_DIR/logs/evaluation/ at each evaluation, beside "
        "per-class AP and precision-recall curves (default 4; 0: none)",
    )
    fit.add_argument(
        "--log-every",
        type=int,
        default=None,
        help="a progress line every this many steps (losses, ms/step, time left); "
        "default: Keras's progress bar on a terminal, a line per epoch otherwise",
    )
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument(
        "--deterministic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the same command, seed and data give bit-identical weights on the same "
        "kind of machine: tensorflow: tf.config.experimental.enable_op_determinism(); "
        "torch: torch.use_deterministic_algorithms(True); jax: nothing to do on a CPU "
        "(its XLA CPU kernels are deterministic already; on a GPU set "
        "XLA_FLAGS=--xla_gpu_deterministic_ops=true yourself). "
        "Default: on for the small backbone (free there), off for the ResNets "
        "(a ResNet-50 training step is ~3x slower with it on a CPU under TensorFlow)",
    )
    where = parser.add_argument_group("devices")
    where.add_argument(
        "--strategy",
        default="none",
        choices=STRATEGIES,
        help="mirrored: tf.distribute.MirroredStrategy on every visible GPU (or on "
        "--cpu-replicas logical CPU devices); multi_worker: "
        "MultiWorkerMirroredStrategy over TF_CONFIG's cluster (run the same "
        "command on every worker; a custom loop, checkpoints/ to resume). "
        "--batch-size is then per replica and --lr applies to the global "
        "batch as given (default none)",
    )
    where.add_argument(
        "--cpu-replicas",
        type=int,
        default=None,
        help="with --strategy mirrored: replicate on this many logical CPU devices "
        "(to try distribution without GPUs)",
    )
    where.add_argument(
        "--mixed-precision",
        default="float32",
        choices=POLICIES,
        help="Keras dtype policy: mixed_float16 (GPUs, with loss scaling) or "
        "mixed_bfloat16 compute the convolutions in 16 bits (default float32)",
    )
    where.add_argument(
        "--jit-compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="compile the convolutions (forward and backward) with XLA; the rest of "
        "the step stays in TensorFlow (default: as Keras's 'auto', on with a "
        "GPU and no distribution strategy)",
    )
    fit.add_argument(
        "--output-dir",
        default="runs/rfcn",
        help="best.keras, final.keras, logs/ (TensorBoard), backup/ (resume)",
    )


def run(args):
    import keras

    from rfcn_tf.distribution import make_strategy, set_policy
    from rfcn_tf.training import choose_optimizer, fit_detector, make_optimizer

    if args.tensorboard_images < 0:
        raise ValueError(f"--tensorboard-images must be >= 0, got {args.tensorboard_images}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        strategy = make_strategy(args.strategy, args.cpu_replicas)  # before any TensorFlow op
        scope, replicas = strategy.scope, strategy.num_replicas_in_sync
    else:  # cli refuses the strategies
        if args.cpu_replicas is not None:
            raise ValueError("--cpu-replicas needs --strategy mirrored")
        scope, replicas = contextlib.nullcontext, 1
    set_policy(args.mixed_precision)
    if _deterministic(args):
        _enable_determinism(backend)
    examples, class_names = examples_from_args(args, args.split, training=True, seed=args.seed)
    # Seeded after the data is found: building a dataset (TFDS, rfcn_shapes) draws from the
    # global generators, so seeding first would make the weights depend on whether it was
    # built in this run.
    keras.utils.set_random_seed(args.seed)
    scale = scale_from_args(args)
    with scope():
        model, config = _build_model(
            args,
            class_names,
            scale,
            lambda config: _check_anchors(
                args, config, examples_from_args(args, args.split, training=True, seed=args.seed)[0]
            ),
        )
    multi_worker = args.strategy == "multi_worker"

    def epoch_batches(epoch):  # a function of the seed and the epoch: the same on every
        # worker, and in a resumed run
        if not uses_tf_data():  # a DetectionDataset draws by [seed, epoch] itself
            dataset = batches_from_args(args, examples, config, training=True, seed=args.seed)
            dataset.epoch = epoch
            return dataset
        seed = args.seed + 1000 * epoch
        data = examples if epoch == 0 else examples_from_args(args, args.split, training=True, seed=seed)[0]
        return batches_from_args(
            args, data, config, training=True, seed=seed, replicas=replicas, drop_remainder=multi_worker
        )

    val_ds = None
    if args.val_split:
        val_ds = batches_from_args(args, examples_from_args(args, args.val_split)[0], config)

    first = epoch_batches(0)
    steps = int(first.cardinality().numpy()) if uses_tf_data() else len(first)
    if steps < 0:
        raise ValueError("the training dataset has no known length; the recipe's schedule needs it")
    boundaries = None
    if args.lr_drop_epochs is not None:
        boundaries = [max(int(e * steps), 1) for e in args.lr_drop_epochs]
    optimizer = choose_optimizer(args.optimizer, args.weights or args.init)
    with scope():
        model.compile(
            optimizer=make_optimizer(
                args.lr,
                boundaries=boundaries,
                optimizer=optimizer,
                total_steps=steps * args.epochs,
                schedule=args.schedule,
                warmup_steps=args.warmup_steps,
                weight_decay=args.weight_decay,
                clipnorm=args.clipnorm,
            ),
            jit_compile="auto" if args.jit_compile is None else args.jit_compile,
        )
    devices = f"{replicas} replicas ({args.strategy})" if replicas > 1 else "one device"
    xla = ", XLA convolutions" if model.jit_compile_convolutions else ""
    print(
        f"training {config.backbone}/{config.head} on {steps} batches of "
        f"{args.batch_size * replicas} × {args.epochs} epochs on {devices}, "
        f"{args.mixed_precision}{xla}, at min_side {config.min_side}, max_side {config.max_side}: "
        f"{optimizer} lr {args.lr}, {args.schedule} schedule"
    )
    data = "tf.data" if uses_tf_data() else "DetectionDataset (numpy, Pillow)"
    print(f"augmentation {args.augment}, crops {args.crop}; batches from {data}, Keras backend {backend}")
    if multi_worker:
        from rfcn_tf.multi_worker import train_multi_worker, worker_info

        train_multi_worker(
            lambda: model,
            epoch_batches,
            args.epochs,
            args.output_dir,
            val_ds,
            class_names=class_names,
            metric=args.metric,
            eval_every=args.eval_every,
            strategy=strategy,
            **({} if args.log_every is None else {"log_every": args.log_every}),
        )
        if worker_info()[0] != 0:
            return None
    else:
        fit_detector(
            model,
            epoch_batches,
            val_ds,
            epochs=args.epochs,
            output_dir=args.output_dir,
            class_names=class_names,
            metric=args.metric,
            eval_every=args.eval_every,
            log_every=args.log_every,
            tensorboard_images=args.tensorboard_images,
            # Keras's progress bar redraws each step: a log file gets one line per epoch
            verbose="auto" if args.log_every is None and sys.stdout.isatty() else 2,
        )
    print(f"saved {os.path.join(args.output_dir, 'final.keras')}")


def _enable_determinism(backend):
    """Deterministic kernels on ``backend`` (``--deterministic``'s help)."""
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


def _deterministic(args):
    """``--deterministic`` / ``--no-deterministic``, else on exactly when the model to train has
    the small backbone. Measured on a 2-core AMD EPYC (benchmarks/bench_training.py
    --determinism off on): small-model step 0.14–0.17 s with op determinism against
    0.13–0.23 s without; ResNet-50 at 600×1000 13.3–15.4 s against 4.5 s."""
    if args.deterministic is not None:
        return args.deterministic
    backbone = args.backbone if not args.small else "small"
    if args.init:  # the backbone of the file to fine-tune, read without TensorFlow
        try:
            with zipfile.ZipFile(args.init) as archive:
                backbone = json.loads(archive.read("config.json"))["config"]["config"]["backbone"]
        except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
            return False  # loading the file reports what is wrong with it
    return backbone == "small"


def _check_anchors(args, config, examples):
    """Print the anchors' recall on the training boxes (warnings to stderr) → the config
    changes ``--anchors`` asks for (``{}`` for default)."""
    from rfcn_tf.anchor_fit import report_anchors, training_box_shapes

    boxes = training_box_shapes(examples, config.min_side, config.max_side, seed=args.seed)
    report = report_anchors(boxes, config, fit=args.anchors == "auto", seed=args.seed)
    info, warnings = report.lines()
    print("\n".join(info))
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    if report.fitted is None:
        return {}
    return {"anchor_scales": report.fitted[0], "anchor_ratios": report.fitted[1]}


def _build_model(args, class_names, scale, anchors):
    """The model to train: ``--init``'s (its class head replaced when the classes differ) or a
    new one from the options → ``(model, config)``. anchors: config → the anchor fields to
    change (``_check_anchors``)."""

    from rfcn_tf.config import RFCNConfig
    from rfcn_tf.loading import load_model
    from rfcn_tf.model import RFCN
    from rfcn_tf.training import freeze_stages, with_num_classes

    if args.init:
        model = load_model(args.init)
        config = model.config
        changes = {**scale, **decoding_changes(config, **decoding_args(args))}
        if args.input_normalization is not None:
            changes["input_normalization"] = args.input_normalization
        changes.update(anchors(config.replace(**changes)))  # as many anchors: same weights
        if (
            config.num_classes != len(class_names)
            or config.class_names != tuple(class_names)
            or config != config.replace(**changes)
        ):
            model = with_num_classes(model, len(class_names), class_names, **changes)
    else:
        params = dict(
            num_classes=len(class_names),
            class_names=tuple(class_names),
            head=args.head,
            backbone_weights=args.weights,
            seed=args.seed,
        )
        if args.feature_stride is not None or args.small:
            params["feature_stride"] = args.feature_stride or SMALL_TRAIN_STRIDE
        if args.input_normalization is not None:
            params["input_normalization"] = args.input_normalization
        params.update(scale)
        config = RFCNConfig.small(**params) if args.small else RFCNConfig(backbone=args.backbone, **params)
        config = config.replace(**decoding_changes(config, **decoding_args(args)))
        config = config.replace(**anchors(config))
        model = RFCN(config=config)
    if args.freeze_stages is not None:
        freeze_stages(model, args.freeze_stages)
    return model, model.config
