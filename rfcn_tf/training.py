"""Training helpers: the paper's optimiser, fine-tuning to new classes, frozen stages,
and ``fit_detector`` — ``model.fit`` with the callbacks a detector run wants."""

import os

import keras

from rfcn_tf.evaluation import MeanAveragePrecisionCallback
from rfcn_tf.model import RFCN

# Layers whose shape depends on the number of classes (re-initialised by with_num_classes).
CLASS_LAYERS = ("class_maps", "class_logits")
STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")


def make_optimizer(learning_rate=1e-3, boundaries=(), decay=0.1, momentum=0.9,
                   weight_decay=5e-4, clipnorm=None):
    """SGD with momentum and weight decay (BatchNorm and biases excluded), its learning
    rate multiplied by ``decay`` at each step in ``boundaries`` — the paper's VOC recipe
    is ``make_optimizer(1e-3, boundaries=[20000])`` for 30k mini-batches."""
    schedule = learning_rate
    if boundaries:
        values = [learning_rate * decay ** i for i in range(len(boundaries) + 1)]
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(list(boundaries), values)
    optimizer = keras.optimizers.SGD(schedule, momentum=momentum, weight_decay=weight_decay,
                                     clipnorm=clipnorm)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def with_num_classes(model, num_classes, class_names=None):
    """A copy of ``model`` for ``num_classes`` classes: every weight kept except the
    class-specific output layer, which starts fresh (fine-tuning on new classes)."""
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    config = model.config.replace(num_classes=num_classes,
                                  class_names=tuple(class_names) if class_names else None)
    new = RFCN(config=config)
    old_weights = {v.path: v for v in model.weights}
    for variable in new.weights:
        source = old_weights.get(variable.path)
        if source is None or tuple(source.shape) != tuple(variable.shape):
            if not any(name in variable.path for name in CLASS_LAYERS):
                raise ValueError(f"no matching weight for {variable.path} in the source model")
            continue
        variable.assign(source)
    return new


def freeze_stages(model, stages):
    """Freeze the backbone up to and including stage ``stages`` (0 = nothing, 1 = conv1,
    2 = conv1+res2 as the paper, …, 5 = all of the backbone); unfreeze the rest.
    BatchNorm layers keep the model's ``freeze_batchnorm`` setting."""
    if not 0 <= stages <= len(STAGES):
        raise ValueError(f"stages must be in 0..{len(STAGES)}, got {stages}")
    frozen = STAGES[:stages]
    for layer in model.trunk.layers + model.head.conv5.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and model.config.freeze_batchnorm:
            layer.trainable = False
            continue
        stage = layer.name.split("_")[0]
        if stage == "pool1":
            stage = "conv1"
        if stage in STAGES:
            layer.trainable = stage not in frozen


def fit_detector(model, train_ds, val_ds=None, epochs=10, output_dir=None, class_names=None,
                 metric="voc07", eval_every=1, callbacks=(), verbose="auto", **fit_kwargs):
    """``model.fit`` with: the ``val_mAP`` callback (when ``val_ds`` is given), and under
    ``output_dir`` the best model by val_mAP (``best.keras``), TensorBoard logs
    (``logs/``), a crash-safe backup to resume from (``backup/``) and the final model
    (``final.keras``). Returns the History."""
    all_callbacks = []
    if val_ds is not None:
        all_callbacks.append(MeanAveragePrecisionCallback(
            val_ds, every_n_epochs=eval_every, metric=metric, class_names=class_names,
            num_classes=model.config.num_classes, verbose=0))
    if output_dir is not None:
        os.makedirs(output_dir, exist_ok=True)
        if val_ds is not None:
            all_callbacks.append(keras.callbacks.ModelCheckpoint(
                os.path.join(output_dir, "best.keras"), monitor="val_mAP", mode="max",
                save_best_only=True))
        all_callbacks.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")))
        all_callbacks.append(keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup")))
    all_callbacks.extend(callbacks)
    # make_pipeline shuffles; fit's default shuffle=True only makes Keras warn on a Dataset.
    fit_kwargs.setdefault("shuffle", False)
    history = model.fit(train_ds, epochs=epochs, callbacks=all_callbacks, verbose=verbose,
                        **fit_kwargs)
    if output_dir is not None:
        model.save(os.path.join(output_dir, "final.keras"))
    return history



def add_train_arguments(parser):
    from rfcn_tf.data.arguments import add_dataset_arguments

    add_dataset_arguments(parser, default_split="train")
    parser.add_argument("--val-split", default=None,
                        help="split for val_mAP after each --eval-every epochs (default: none)")
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="resnet101", choices=["resnet50", "resnet101", "resnet152", "small"])
    model.add_argument("--weights", default=None,
                       help="backbone weights: 'imagenet' or a weights file (default: random init)")
    model.add_argument("--head", default="rfcn", choices=["rfcn", "faster_rcnn"])
    model.add_argument("--small", action="store_true",
                       help="the CPU-sized configuration (RFCNConfig.small: small backbone, k=3, small anchors)")
    model.add_argument("--feature-stride", type=int, choices=[8, 16], default=None,
                       help="output stride of the backbone: 16 (default), or 8 with the small "
                            "backbone, for objects of only one or two stride-16 cells")
    model.add_argument("--init", default=None,
                       help="start from this .keras model (fine-tuning; the class head is replaced "
                            "when the dataset has a different number of classes)")
    model.add_argument("--freeze-stages", type=int, default=None,
                       help="freeze backbone stages 1..N (2 = conv1+res2, the paper's choice)")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=10)
    fit.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3, the paper's)")
    fit.add_argument("--lr-drop-epochs", type=int, nargs="*", default=[],
                     help="epochs after which the learning rate is divided by 10")
    fit.add_argument("--weight-decay", type=float, default=5e-4)
    fit.add_argument("--clipnorm", type=float, default=None)
    fit.add_argument("--eval-every", type=int, default=1)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--output-dir", default="runs/rfcn",
                     help="best.keras, final.keras, logs/ (TensorBoard), backup/ (resume)")


def run_train(args):
    """The ``rfcn-tf train`` command."""
    from rfcn_tf.config import RFCNConfig
    from rfcn_tf.data.arguments import dataset_from_args

    keras.utils.set_random_seed(args.seed)
    train_ds, class_names = dataset_from_args(args, args.split, training=True, seed=args.seed)
    val_ds = dataset_from_args(args, args.val_split)[0] if args.val_split else None
    if args.init:
        model = keras.models.load_model(args.init)
        if model.config.num_classes != len(class_names) or model.config.class_names != tuple(class_names):
            model = with_num_classes(model, len(class_names), class_names)
    else:
        params = dict(num_classes=len(class_names), class_names=tuple(class_names), head=args.head,
                      backbone_weights=args.weights, seed=args.seed)
        if args.feature_stride is not None:
            params["feature_stride"] = args.feature_stride
        if args.small:
            config = RFCNConfig.small(**params)
        else:
            config = RFCNConfig(backbone=args.backbone, **params)
        model = RFCN(config=config)
    if args.freeze_stages is not None:
        freeze_stages(model, args.freeze_stages)
    steps = train_ds.cardinality().numpy()
    if steps < 0 and args.lr_drop_epochs:
        raise ValueError("--lr-drop-epochs needs a dataset of known length")
    model.compile(optimizer=make_optimizer(
        args.lr, boundaries=[int(e * steps) for e in args.lr_drop_epochs],
        weight_decay=args.weight_decay, clipnorm=args.clipnorm))
    fit_detector(model, train_ds, val_ds, epochs=args.epochs, output_dir=args.output_dir,
                 class_names=class_names, eval_every=args.eval_every)
    print(f"saved {os.path.join(args.output_dir, 'final.keras')}")
