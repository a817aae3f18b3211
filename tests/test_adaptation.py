"""AdaBN (``rfcn_tf.adapt_batchnorm``, ``rfcn-tf adapt``): every BatchNorm's new statistics
against numpy's statistics of what the layer receives, pooling over batches, tiles, files,
frozen layers, errors that change nothing, and the command line."""

import logging

import keras
import numpy as np
import pytest

from rfcn_tf import RFCN, RFCNConfig, adapt_batchnorm, tile_grid
from rfcn_tf.adaptation import batchnorm_layers
from rfcn_tf.cli import main
from rfcn_tf.loading import load_model
from tests.model_helpers import random_image, trained_like, write_png

SCALE = (192, 320)  # RFCNConfig.small's min_side, max_side: an image this size is not resized


def _model(seed=0, **overrides):
    keras.utils.set_random_seed(seed)
    model = RFCN(config=RFCNConfig.small(num_classes=3, **overrides))
    trained_like(model, seed)  # statistics far from those of the images below
    return model


def _stats(model):
    return [
        (keras.ops.convert_to_numpy(bn.moving_mean), keras.ops.convert_to_numpy(bn.moving_variance))
        for bn in batchnorm_layers(model)
    ]


def _inputs_seen(model, images):
    """Each BatchNorm's input ``[N, h, w, C]`` in an inference pass of ``images`` (one image a call)."""
    seen = {bn.name: [] for bn in batchnorm_layers(model)}
    originals = {}
    for bn in batchnorm_layers(model):
        originals[bn.name] = bn.call

        def record(x, *args, _call=bn.call, _name=bn.name, **kwargs):
            seen[_name].append(keras.ops.convert_to_numpy(x).reshape(-1, x.shape[-1]))
            return _call(x, *args, **kwargs)

        bn.call = record
    try:
        for image in images:
            model(np.asarray(image, np.float32)[None])
    finally:
        for bn in batchnorm_layers(model):
            bn.call = originals[bn.name]
    return {name: np.concatenate(values).astype(np.float64) for name, values in seen.items()}


def _shifted(seed, count, shape=SCALE):
    """Images of another "site": a colour cast and lower contrast than uniform noise."""
    rng = np.random.default_rng(seed)
    return [
        np.clip(random_image(*shape, seed + i) * 0.5 + rng.uniform(40, 120, 3), 0, 255).astype(np.uint8)
        for i in range(count)
    ]


def test_one_batch_gives_every_batchnorm_the_statistics_it_receives_at_inference():
    model = _model()
    images = _shifted(1, 3)
    before = _stats(model)
    counts = adapt_batchnorm(model, images, batch_size=3)
    assert counts == {"images": 3, "windows": 3, "batchnorms": 9, "skipped": []}
    # One batch: the training-mode pass normalised each layer with the statistics of the
    # whole set, which it now keeps, so the inference pass gives each layer the same inputs.
    seen = _inputs_seen(model, images)
    for bn, (mean, var), (old_mean, _) in zip(batchnorm_layers(model), _stats(model), before):
        x = seen[bn.name]
        np.testing.assert_allclose(mean, x.mean(0), rtol=1e-4, atol=1e-4 * x.std(), err_msg=bn.name)
        np.testing.assert_allclose(var, x.var(0), rtol=1e-3, atol=1e-4 * x.var(), err_msg=bn.name)
        assert np.abs(mean - old_mean).max() > 0.1 * x.std()  # far from the old statistics


def test_batches_are_pooled_by_pixels():
    # Batches of 2, 2 and 1 images of two sizes (both at the model's scale, so not resized):
    # conv1_bn (no BatchNorm before it) gets the statistics of all their pixels together.
    images = _shifted(2, 4) + _shifted(7, 1, shape=(192, 256))
    model = _model()
    adapt_batchnorm(model, images, batch_size=2)
    x = _inputs_seen(model, images)["conv1_bn"]
    mean, var = _stats(model)[0]
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-4, atol=1e-4 * x.std())
    np.testing.assert_allclose(var, x.var(0), rtol=1e-3, atol=1e-4 * x.var())


def test_tiles_are_what_predict_tiled_sees():
    image = _shifted(3, 1, shape=(400, 700))[0]
    windows = [image[y0:y1, x0:x1] for y0, x0, y1, x1 in tile_grid(400, 700, SCALE, overlap=0.0)]
    assert len(windows) == 9
    expected = _model()
    adapt_batchnorm(expected, windows, batch_size=4)
    for tile in (SCALE, "auto"):
        model = _model()
        counts = adapt_batchnorm(model, [image], tile=tile, batch_size=4)
        assert (counts["images"], counts["windows"]) == (1, 9)
        for (mean, var), (want_mean, want_var) in zip(_stats(model), _stats(expected)):
            np.testing.assert_array_equal(mean, want_mean)
            np.testing.assert_array_equal(var, want_var)


def test_files_and_folders_and_an_unreadable_file(tmp_path, caplog):
    images = _shifted(4, 3)
    for i, image in enumerate(images):
        write_png(tmp_path / f"site_{i}.png", image)
    (tmp_path / "site_3.png").write_bytes(b"not an image")
    expected = _model()
    adapt_batchnorm(expected, images, batch_size=2)
    model = _model()
    with caplog.at_level(logging.WARNING, logger="rfcn_tf.adaptation"):
        counts = adapt_batchnorm(model, str(tmp_path), batch_size=2)
    assert counts["images"] == 3 and counts["skipped"] == [str(tmp_path / "site_3.png")]
    assert "site_3.png" in caplog.text
    for (mean, var), (want_mean, want_var) in zip(_stats(model), _stats(expected)):
        np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var, want_var, rtol=1e-5, atol=1e-6)


def test_frozen_batchnorms_are_adapted_and_stay_frozen():
    model = _model(freeze_batchnorm=True)
    layers = batchnorm_layers(model)
    assert not any(bn.trainable for bn in layers)
    before = _stats(model)
    adapt_batchnorm(model, _shifted(5, 2))
    assert not any(bn.trainable for bn in layers) and all(bn.momentum == 0.9 for bn in layers)
    assert all(not np.allclose(a[0], b[0]) for a, b in zip(_stats(model), before))


def test_faster_rcnn_head_batchnorms_per_roi_are_adapted():
    model = _model(head="faster_rcnn")
    before = _stats(model)
    adapt_batchnorm(model, _shifted(6, 2), batch_size=2)
    assert [bn.name for bn in batchnorm_layers(model)][-2:] == ["conv5_1_bn", "conv5_2_bn"]
    assert all(not np.allclose(a[0], b[0]) for a, b in zip(_stats(model), before))


def test_bad_input_is_refused_and_an_error_changes_nothing(tmp_path, monkeypatch):
    model = _model()
    before = _stats(model)
    with pytest.raises(ValueError, match=r"^image 1 must be \[height, width, 3\] RGB; got shape \(8, 8\)"):
        adapt_batchnorm(model, [np.zeros((8, 8, 3)), np.zeros((8, 8))])
    with pytest.raises(ValueError, match="^batch_size must be a positive int"):
        adapt_batchnorm(model, _shifted(0, 1), batch_size=0)
    with pytest.raises(ValueError, match="^no images given"):
        adapt_batchnorm(model, [])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match=r"^no image could be read .* \(1 skipped\)"):
        adapt_batchnorm(model, [str(tmp_path / "broken.jpg")])

    # An error after some batches ran restores the statistics the model had.
    import rfcn_tf.adaptation as adaptation

    calls = []
    real = adaptation.static_resized_size

    def fail_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return real(*args)

    monkeypatch.setattr(adaptation, "static_resized_size", fail_second)
    with pytest.raises(RuntimeError, match="interrupted"):
        adapt_batchnorm(model, _shifted(0, 3), batch_size=1)
    assert len(calls) == 2
    for (mean, var), (old_mean, old_var) in zip(_stats(model), before):
        np.testing.assert_array_equal(mean, old_mean)
        np.testing.assert_array_equal(var, old_var)
    assert all(bn.trainable and bn.momentum == 0.9 for bn in batchnorm_layers(model))


def test_command_line(tmp_path, capsys):
    model = _model()
    source = tmp_path / "model.keras"
    model.save(source)
    folder = tmp_path / "site_b"
    folder.mkdir()
    images = _shifted(8, 2, shape=(500, 400))
    for i, image in enumerate(images):
        write_png(folder / f"{i}.png", image)
    out = tmp_path / "adapted.keras"
    code = main(["adapt", "--model", str(source), str(folder), "--tile", "192x320", "--output", str(out)])
    assert code == 0
    tiles = 2 * len(tile_grid(500, 400, SCALE, overlap=0.0))
    assert f"9 BatchNorms adapted on {tiles} tiles of 2 images → {out}" in capsys.readouterr().out
    adapt_batchnorm(model, images, tile=SCALE)
    for (mean, var), (want_mean, want_var) in zip(_stats(load_model(out)), _stats(model)):
        np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(var, want_var, rtol=1e-5, atol=1e-6)

    (folder / "broken.png").write_bytes(b"broken")
    assert main(["adapt", "--model", str(source), str(folder), "--output", str(tmp_path / "b.keras")]) == 1
    out = capsys.readouterr().out
    assert f"9 BatchNorms adapted on 2 images → {tmp_path / 'b.keras'}" in out
    assert "could not read 1:" in out
    assert main(["adapt", "--model", str(folder), str(folder), "--output", str(tmp_path / "c.keras")]) == 2
    assert f"--model must be a .keras file; {folder} is a folder" in capsys.readouterr().err
    assert main(["adapt", "--model", str(source), str(folder), "--output", str(source)]) == 2
    assert "--output must differ from --model" in capsys.readouterr().err
    assert main(["adapt", "--model", str(source), str(folder), "--output", str(tmp_path / "x.h5")]) == 2
    assert "--output must be a .keras file" in capsys.readouterr().err
