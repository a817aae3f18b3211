"""Quiet exporters: TensorFlow's and the converters' INFO lines hidden while they run."""

import contextlib
import logging


@contextlib.contextmanager
def quiet_logs(*names):
    """Within: the ``tensorflow`` logger and the loggers ``names`` (e.g. ``"tf2onnx"``) show
    warnings and errors only — not "Assets written to: <a temporary directory>" nor
    tf2onnx's optimiser report. Their levels come back on exit."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", *names)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
