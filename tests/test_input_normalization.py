"""``RFCNConfig.input_normalization="per_image"``: the layer against numpy's definition, a
padded batch against its images alone, detections blind to a colour offset, the exports,
the config and the command line's flag."""

import keras
import numpy as np
import pytest

from rfcn_tf import RFCN, RFCNConfig, pack_images
from rfcn_tf.export import export_onnx, export_saved_model, export_tflite
from rfcn_tf.layers import Preprocess
from rfcn_tf.loading import load_detector
from tests.model_helpers import assert_same_detections_any_order, random_image, sharpen


def per_image_reference(image):
    """One ``[h, w, 3]`` RGB image → BGR, each channel minus its mean over (its standard
    deviation + 1), × 50 (float64)."""
    x = image[..., ::-1].astype(np.float64)
    mean = x.mean(axis=(0, 1))
    std = x.std(axis=(0, 1))
    return (x - mean) / (std + 1.0) * Preprocess.PER_IMAGE_SCALE


def test_layer_standardises_each_image_over_its_true_pixels():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 255, (20, 30, 3)).astype(np.float32)
    b = (rng.uniform(0, 80, (13, 21, 3)) + [150, 20, 60]).astype(np.float32)  # a colour cast
    packed = pack_images([a, b])  # b zero-padded to 20 × 30
    out = np.asarray(Preprocess(stride=8, normalization="per_image")(packed["images"], packed["image_sizes"]))
    assert out.shape == (2, 24, 32, 3)  # padded up to a multiple of the stride
    # float32 sums of a few hundred values in 0..255 (a few ulps of 255, ~1e-4), × 50 / σ.
    np.testing.assert_allclose(out[0, :20, :30], per_image_reference(a), atol=5e-4)
    np.testing.assert_allclose(out[1, :13, :21], per_image_reference(b), atol=5e-4)
    assert not out[0, 20:].any() and not out[0, :, 30:].any()
    assert not out[1, 13:].any() and not out[1, :, 21:].any()
    # The backbone's convention on the same batch: the ImageNet means removed instead.
    fixed = np.asarray(Preprocess(stride=8)(packed["images"], packed["image_sizes"]))
    np.testing.assert_allclose(fixed[1, :13, :21], b[..., ::-1] - [103.939, 116.779, 123.68], atol=1e-4)


@pytest.fixture(scope="module")
def models():
    out = {}
    for normalization in ("per_image", "backbone"):
        keras.utils.set_random_seed(3)
        model = RFCN(config=RFCNConfig.small(num_classes=3, input_normalization=normalization))
        sharpen(model, seed=1)
        out[normalization] = model
    return out


def test_a_padded_batch_detects_like_its_images_alone(models):
    model = models["per_image"]
    images = [random_image(192, 320, 1), random_image(150, 250, 2)]
    batch = model.predict(pack_images(images), verbose=0)
    for i, image in enumerate(images):
        alone = model.predict(image[None], verbose=0)
        n = int(batch["num_detections"][i])
        one = {k: v[i : i + 1, :n] if v.ndim > 1 else v[i : i + 1] for k, v in batch.items()}
        assert_same_detections_any_order(one, alone)


def test_detections_do_not_see_a_colour_offset(models):
    image = random_image(192, 320, 5).astype(np.float32) * 0.6 + 20  # 20..173: room to shift
    cast = image + np.array([60.0, -15.0, 30.0], np.float32)  # a site's colour cast
    per_image = models["per_image"]
    assert_same_detections_any_order(per_image(cast[None]), per_image(image[None]), score_atol=1e-4)
    # The backbone's convention passes the cast on: its best confidence moves.
    backbone = models["backbone"]
    best = [keras.ops.convert_to_numpy(backbone(x[None])["confidence"]).max() for x in (cast, image)]
    assert abs(best[0] - best[1]) > 1e-3


@pytest.mark.slow  # three exports
def test_exports_detect_like_the_keras_model(models, tmp_path):
    model = models["per_image"]
    image = random_image(192, 320, 7)[None]
    expected = model(image)
    for export in (export_saved_model, export_tflite, export_onnx):
        detector, _ = load_detector(export(model, tmp_path / export.__name__))
        assert_same_detections_any_order(detector(image), expected, box_atol=1.0, score_atol=1e-3)


def test_config_checks_the_value_and_old_configs_load_as_before():
    with pytest.raises(ValueError, match="^RFCNConfig: input_normalization must be one of"):
        RFCNConfig(input_normalization="imagenet")
    with pytest.raises(ValueError, match="^normalization must be one of"):
        Preprocess(normalization="none")
    stored = RFCNConfig.small().to_dict()
    del stored["input_normalization"]  # a model file written before the field existed
    assert RFCNConfig.from_dict(stored).input_normalization == "backbone"
