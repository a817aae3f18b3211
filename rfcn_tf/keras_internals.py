"""The private Keras and LiteRT attributes rfcn_tf relies on, in one place.

Keras offers no public way to do these; each is checked on Keras 3.15.1 (and ai-edge-litert
2.x) by ``tests/test_keras_internals.py``, which fails naming the attribute if a release
changes it. One more lives where it must, as a method override: ``RFCN.compute_loss_and_updates``
reads the optimizer's iteration count from the arguments of JAX's jitted training step (the
test checks that ``JAXTrainer.compute_loss_and_updates`` still takes ``optimizer_variables``).
"""

import contextlib

CHECKED_ON = "keras 3.15.1"


def walk_layers(model):
    """Every layer of ``model`` and of the models nested in it, once each (public API:
    ``layers`` recursively)."""
    seen = set()

    def walk(parent):
        for layer in parent.layers:
            if id(layer) not in seen:
                seen.add(id(layer))
                yield layer
                if hasattr(layer, "layers"):
                    yield from walk(layer)

    return list(walk(model))


def inbound_nodes(layer):
    """The graph nodes calling ``layer`` (each with ``parent_nodes`` and ``input_tensors``)."""
    return layer._inbound_nodes


def outbound_nodes(layer):
    """The graph nodes reading ``layer``'s outputs (each with ``operation``)."""
    return layer._outbound_nodes


@contextlib.contextmanager
def replaced_calls(replacements):
    """Within: each layer of ``replacements`` (``{layer: fn(inputs, training=None, mask=None)}``)
    computes ``fn`` instead of its ``call`` wherever it is called, in the functional graphs
    it belongs to too; its own ``call`` comes back on exit.

    Keras has no public way to change one layer's computation inside a built functional
    graph (``clone_model(call_function=...)`` would add graph nodes to the shared layers,
    changing what ``inbound_nodes`` reports; cloning the layers would copy every weight).
    ``Layer.__call__`` calls ``self.call``, so an instance attribute ``call`` overrides it."""
    try:
        for layer, fn in replacements.items():
            layer.call = fn
        yield
    finally:
        for layer in replacements:
            layer.__dict__.pop("call", None)


def loss_tracker(model):
    """The ``Mean`` behind ``fit``'s and ``evaluate``'s ``loss`` (a custom ``test_step``
    updates it)."""
    return model._loss_tracker


def resume_at_epoch(model, epoch):
    """Make a ``fit`` that is starting (``on_train_begin``) begin at ``epoch``, as Keras's own
    ``BackupAndRestore`` does."""
    model._initial_epoch = epoch


def distribute_strategy(model):
    """The ``tf.distribute`` strategy ``model`` was built under, or None."""
    return getattr(model, "_distribute_strategy", None)


def tflite_op_details(interpreter):
    """A LiteRT / ``tf.lite`` interpreter's ``[{"op_name": …, …}]``, one per op."""
    return interpreter._get_ops_details()
