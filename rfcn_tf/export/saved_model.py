"""The SavedModel export, for TF Serving: ``export_saved_model(model, "saved_models/rfcn")``
writes ``saved_models/rfcn/<version>/`` (``rfcn_tf.export.versions``):

    saved_model.pb, fingerprint.pb               the SavedModel (``rfcn_tf.export.frozen``: the
                                                 weights are constants of its graph, no variables)
    assets.extra/labels.txt                      class names, line i = class id i (if known)
    assets.extra/rfcn_config.json                the model's ``RFCNConfig``

``assets.extra/`` is the SavedModel convention for files that live beside a model without
being loaded by its graph: TF Serving and ``tf.saved_model.load`` ignore it. The
signatures are described in ``rfcn_tf.export.signatures``.
"""

import os

import tensorflow as tf

from rfcn_tf.export.files import EXTRA_DIR
from rfcn_tf.export.frozen import freeze_for_inference
from rfcn_tf.export.logs import quiet_logs
from rfcn_tf.export.signatures import build_signatures
from rfcn_tf.export.versions import as_rfcn, names_and_config, write_extras, write_version


def export_saved_model(model, export_dir, version=None, name=None, class_names=None, overwrite=False):
    """Write ``model`` (an ``RFCN`` or a ``.keras`` path) as ``<export_dir>[/<name>]/<version>/``
    for TF Serving and return that version directory's path.

    version: a non-negative int; default one more than the largest numeric sub-directory
    (1 for a new directory). class_names: overrides ``model.config.class_names``; must
    have ``num_classes`` entries. overwrite: replace an existing version directory
    (otherwise FileExistsError). Every signature runs the model's own resize (its
    ``min_side`` / ``max_side``), so any image size may be sent.

    The export is written into a temporary sibling (not a number, so TF Serving never
    loads it) and renamed into place once complete; on any error it is removed.
    """
    model = as_rfcn(model)
    names, config = names_and_config(model, class_names)

    def write(directory):
        write_saved_model(model, directory)
        write_extras(os.path.join(directory, EXTRA_DIR), names, config)

    return write_version(export_dir, name, version, overwrite, write)


def write_saved_model(model, directory):
    """The frozen detector of ``model`` as a SavedModel in ``directory``, with the signatures
    of ``rfcn_tf.export.signatures``."""
    detector = freeze_for_inference(model)
    with quiet_logs():  # not "Assets written to: <the temporary directory>"
        tf.saved_model.save(detector, directory, signatures=build_signatures(detector))
