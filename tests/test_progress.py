"""``rfcn_tf.progress``: plain periodic lines off a terminal (counts, rate, time left), the
Keras bar on one, and the lines of ``rfcn-tf predict``, ``evaluate`` and ``export``."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from rfcn_tf import progress as progress_module
from rfcn_tf.cli import main
from rfcn_tf.progress import Progress, format_duration, is_interactive
from tests.test_cli import write_voc_folder


@pytest.fixture
def clock(monkeypatch):
    """A settable ``time.perf_counter`` for the module: ``clock[0] = seconds``."""
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    return now


def test_plain_lines_every_n_items_with_count_rate_and_time_left(clock):
    out = io.StringIO()
    progress = Progress(25, "predict", "images", every=10, stream=out, interactive=False)
    for done, seconds in ((3, 1.0), (10, 2.0), (14, 3.0), (24, 6.0), (25, 7.0)):
        clock[0] = seconds
        progress.update(done)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "predict: 10/25 images, 5 images/s, 0:03 left",  # 15 left at 5/s
        "predict: 24/25 images, 4 images/s, 0:00 left",  # passed 20 on the way to 24
        "predict: 25/25 images, 3.57 images/s, done in 0:07",  # the end, from finish()
    ]


def test_a_multiple_of_every_at_the_end_is_printed_once(clock):
    out = io.StringIO()
    progress = Progress(20, "evaluate", "batches", every=10, stream=out, interactive=False)
    clock[0] = 40.0
    progress.update(20)
    progress.finish()
    assert out.getvalue().splitlines() == ["evaluate: 20/20 batches, 0.5 batches/s, done in 0:40"]


def test_default_every_is_a_tenth_and_unknown_totals_count_without_time_left(clock):
    assert Progress(95, "x", stream=io.StringIO(), interactive=False).every == 10
    assert Progress(3, "x", stream=io.StringIO(), interactive=False).every == 1
    out = io.StringIO()
    progress = Progress(None, "x", "items", stream=out, interactive=False)
    assert progress.every == 100
    clock[0] = 2.0
    progress.update(150)
    clock[0] = 4.0
    progress.update(180)
    progress.finish()
    assert out.getvalue().splitlines() == ["x: 150 items, 75 items/s", "x: 180 items, 45 items/s"]


def test_a_log_file_is_not_interactive_even_with_ipykernel_imported():
    import ipykernel  # noqa: F401  (nbclient's kernelspec look-up imports it into a test run)

    assert not is_interactive(io.StringIO())
    assert Progress(4, "x", stream=io.StringIO()).interactive is False


def test_verbose_0_prints_nothing_and_going_back_is_an_error(capsys):
    out = io.StringIO()
    progress = Progress(4, "x", stream=out, interactive=True, verbose=0)
    progress.update(4)
    progress.finish()
    assert out.getvalue() == "" and capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="cannot go back: 3 after 4"):
        progress.update(3)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        Progress(4, "x", every=0)


def test_on_a_terminal_the_keras_bar_is_drawn_with_the_rate(capsys):
    out = io.StringIO()
    progress = Progress(4, "predict", "images", stream=out, interactive=True)
    progress.update(2)
    progress.update(4)
    progress.finish()
    assert out.getvalue() == ""  # no plain lines
    bar = capsys.readouterr().out
    assert "4/4" in bar and "images/s" in bar and "\r" in bar


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.6, 61, 3600, 3725)] == [
        "0:00",
        "1:00",
        "1:01",
        "1:00:00",
        "1:02:05",
    ]


# ------------------------------------------------------------------------------ the commands
LINE = r"{label}: (\d+)/(\d+) {unit}, ([0-9.e+-]+) {unit}/s(, [0-9:]+ left|, done in [0-9:]+)"


def progress_lines(text, label, unit):
    """``(done, total, rate)`` of each plain progress line of ``label`` in ``text``."""
    pattern = re.compile(LINE.format(label=label, unit=unit))
    found = [pattern.fullmatch(line) for line in text.splitlines() if line.startswith(label + ":")]
    assert all(found), text
    return [(int(m.group(1)), int(m.group(2)), float(m.group(3))) for m in found]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """An untrained small model for the classes of ``write_voc_folder`` (cat, dog)."""
    from rfcn_tf import RFCN, RFCNConfig

    path = tmp_path_factory.mktemp("model") / "model.keras"
    RFCN(config=RFCNConfig.small(num_classes=2, class_names=("cat", "dog"), min_side=96, max_side=128)).save(
        path
    )
    return path


@pytest.mark.slow
def test_predict_evaluate_and_export_print_periodic_lines_off_a_terminal(
    model_file, tmp_path, capsys, monkeypatch
):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(images / f"{i}.png")
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                "--model",
                str(model_file),
                str(images),
                "--batch-size",
                "2",
                "--output-dir",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    lines = progress_lines(capsys.readouterr().out, "predict", "images")
    assert [(done, total) for done, total, _ in lines] == [(2, 4), (4, 4)]
    assert all(rate > 0 for _, _, rate in lines)

    voc = write_voc_folder(tmp_path / "voc")  # 4 images
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_file),
                "--dataset",
                str(voc),
                "--split",
                "all",
                "--batch-size",
                "1",
            ]
        )
        == 0
    )
    lines = progress_lines(capsys.readouterr().out, "evaluate", "batches")
    assert [(done, total) for done, total, _ in lines] == [(1, 4), (2, 4), (3, 4), (4, 4)]

    # The writing itself is tested in test_cli and test_export; here only its stages count.
    from rfcn_tf import RFCN
    from rfcn_tf import export as export_module  # `rfcn-tf export` imports its writers when it runs

    written = []
    monkeypatch.setattr(
        export_module,
        "export_saved_model",
        lambda model, export_dir, **kwargs: written.append(model) or export_dir,
    )
    assert main(["export", "--model", str(model_file), "--export-dir", str(tmp_path / "export")]) == 0
    assert len(written) == 1 and isinstance(written[0], RFCN)
    out = capsys.readouterr().out
    lines = progress_lines(out, "export", "stages")
    assert [(done, total) for done, total, _ in lines] == [(1, 2), (2, 2)]
    assert out.index("export: 2/2 stages") < out.index("wrote ")
