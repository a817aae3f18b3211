"""The test-time settings a trained model can change without retraining, and the warning when
an image's detections reach the cap.

``max_detections`` (detections kept per image), ``proposals`` (RPN proposals kept after NMS
at test time, ``rpn_post_nms_test``; ``rpn_pre_nms_test`` is raised to it when lower) and
``score_threshold`` (the decoder's minimum class score) are ``RFCNConfig`` fields that shape
no weight: ``with_decoding`` rebuilds a model with new values and the same weights (the
mechanism of ``training.with_num_classes``); a ``.keras`` file or an export written after
carries them. The defaults (100 detections, 300 proposals; 100 with ``RFCNConfig.small``)
suit photos of a few objects; a dense scene of hundreds needs more of both. The scale the
model resizes images to (``min_side`` / ``max_side``) shapes no weight either: ``rfcn-tf
evaluate --min-side`` runs a ``.keras`` model at another scale the same way.
"""

import logging

import numpy as np

logger = logging.getLogger(__name__)

FLAGS = {
    "max_detections": "--max-detections",
    "proposals": "--proposals",
    "score_threshold": "--score-threshold",
    "min_side": "--min-side",
    "max_side": "--max-side",
}


def decoding_changes(
    config, max_detections=None, proposals=None, score_threshold=None, min_side=None, max_side=None
):
    """The ``RFCNConfig`` fields to replace in ``config`` for these settings (None = keep) →
    a dict, empty when nothing changes. ValueError names the setting that is out of range."""
    changes = {}
    if max_detections is not None:
        _check(
            _is_int(max_detections) and max_detections >= 1,
            "max_detections",
            f"must be an integer >= 1; got {max_detections!r}",
        )
        changes["max_detections"] = int(max_detections)
    if proposals is not None:
        _check(
            _is_int(proposals) and proposals >= 1, "proposals", f"must be an integer >= 1; got {proposals!r}"
        )
        changes["rpn_post_nms_test"] = int(proposals)
        changes["rpn_pre_nms_test"] = max(config.rpn_pre_nms_test, int(proposals))
    if score_threshold is not None:
        _check(
            isinstance(score_threshold, (int, float, np.floating)) and 0.0 <= score_threshold < 1.0,
            "score_threshold",
            f"must be in [0, 1); got {score_threshold!r}",
        )
        changes["score_threshold"] = float(score_threshold)
    if min_side is not None:
        sides = tuple(min_side) if isinstance(min_side, (list, tuple)) else (min_side,)
        _check(
            sides and all(_is_int(v) and v >= 1 for v in sides),
            "min_side",
            f"must be an integer >= 1 or a list of them; got {min_side!r}",
        )
        changes["min_side"] = config.replace(min_side=tuple(int(v) for v in sides)).min_side  # its own form
    if max_side is not None:
        _check(_is_int(max_side) and max_side >= 1, "max_side", f"must be an integer >= 1; got {max_side!r}")
        changes["max_side"] = int(max_side)
    return {k: v for k, v in changes.items() if getattr(config, k) != v}


def with_decoding(
    model, max_detections=None, proposals=None, score_threshold=None, min_side=None, max_side=None
):
    """``model`` (an ``RFCN``) rebuilt with these test-time settings (module doc) and its
    weights; ``model`` itself when they are its own already."""
    from rfcn_tf.training import with_num_classes

    config = model.config
    changes = decoding_changes(config, max_detections, proposals, score_threshold, min_side, max_side)
    if not changes:
        return model
    return with_num_classes(model, config.num_classes, config.class_names, **changes)


def add_decoding_arguments(parser, score_threshold=True):
    """``--max-detections``, ``--proposals`` and (unless the command has its own)
    ``--score-threshold`` on ``parser``; read them back with ``decoding_args``."""
    group = parser.add_argument_group("decoding (dense scenes)")
    group.add_argument(
        "--max-detections",
        type=int,
        default=None,
        metavar="N",
        help="detections kept per image (RFCNConfig.max_detections; default: "
        "the model's, 100); a .keras model is rebuilt with it, an export "
        "carries it",
    )
    group.add_argument(
        "--proposals",
        type=int,
        default=None,
        metavar="N",
        help="RPN proposals scored per image at test time "
        "(RFCNConfig.rpn_post_nms_test; default: the model's, 300 or 100 "
        "with --small); raise it with --max-detections for dense scenes",
    )
    if score_threshold:
        group.add_argument(
            "--score-threshold",
            type=float,
            default=None,
            metavar="F",
            help="minimum class score of a detection (RFCNConfig."
            "score_threshold; default: the model's, 0.05)",
        )
    return group


def decoding_args(args):
    """The settings ``add_decoding_arguments`` parsed → keyword arguments of ``with_decoding``."""
    return {
        "max_detections": args.max_detections,
        "proposals": args.proposals,
        "score_threshold": getattr(args, "score_threshold", None),
    }


def count_capped(num_detections, max_detections):
    """How many images (or tiles) of ``num_detections [B]`` reached ``max_detections``."""
    return int(np.sum(np.asarray(num_detections) >= max_detections))


def warn_capped(where, max_detections):
    """A logged warning that ``where`` (e.g. "photo.jpg", "3 of 20 tiles") reached the cap
    of ``max_detections`` detections."""
    logger.warning(
        "%s: reached the cap of %d detections (max_detections); objects beyond it are lost: "
        "raise it with --max-detections N (and --proposals N), or "
        "rfcn_tf.with_decoding(model, max_detections=N)",
        where,
        max_detections,
    )


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check(ok, name, message):
    if not ok:
        raise ValueError(f"{name} ({FLAGS[name]}) {message}")
