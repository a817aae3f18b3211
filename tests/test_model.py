"""The RFCN model: graph shapes at the paper's size, batching, saving, bad input."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from rfcn_tf import RFCN, RFCNConfig, pack_images
from rfcn_tf.backbones import build_backbone
from tests.model_helpers import sharpen

OUTPUT_KEYS = {"boxes", "confidence", "labels", "num_detections"}


def small_model(**overrides):
    return RFCN(config=RFCNConfig.small(num_classes=4, **overrides))


def random_image(h, w, seed):
    return np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def resnet101_model():
    return RFCN(num_classes=20, backbone="resnet101")


@pytest.mark.slow
def test_resnet101_dilated_conv5_score_maps_at_paper_size(resnet101_model):
    model = resnet101_model
    assert model.config.k == 7 and model.config.head == "rfcn"
    assert (model.config.min_side, model.config.max_side) == (600, 1000)
    raw = model.features_model({"images": np.zeros((1, 600, 1000, 3), np.float32), "image_sizes": None})
    # 600×1000 padded to 608×1008 → stride 16 → 38×63.
    assert raw["class_maps"].shape == (1, 38, 63, 7 * 7 * 21)
    assert raw["box_maps"].shape == (1, 38, 63, 4 * 7 * 7)
    assert raw["rpn_logits"].shape == (1, 38, 63, 9)
    assert raw["proposals"].shape == (1, 300, 4)
    dilated = [l for l in model.conv5.layers if isinstance(l, keras.layers.Conv2D)]
    assert all(tuple(l.strides) == (1, 1) for l in dilated)
    assert {tuple(l.dilation_rate) for l in dilated if l.kernel_size == (3, 3)} == {(2, 2)}


def upstream(graph, name):
    """Names of the layers ``name``'s output is computed from in ``graph`` (a functional
    model, cut there); None for a nested model (its ``output`` is the one of its own graph)."""
    layer = keras.Model.get_layer(graph, name)
    if isinstance(layer, keras.Model):
        return None
    return {l.name for l in keras.Model(graph.inputs, layer.output).layers} - {name}


def test_functional_graph_runs_the_steps_in_the_papers_order(resnet101_model):
    """image → resize → preprocess → convolutions → anchors → proposals → roi_head →
    detections; within the convolutions trunk → RPN and trunk → conv5 → score maps, conv5
    not downstream of the RPN (R-FCN runs it once on the whole image); within the roi_head
    PSRoIPool reads the score maps and the RoIs, the votes its bins: each arrow checked on
    the graphs' connections."""
    model = resnet101_model
    convolutions, roi_head = model.convolutions, model.roi_head
    steps = [
        "images",
        "resize",
        "preprocess",
        "convolutions",
        "anchors",
        "proposals",
        "roi_head",
        "detections",
    ]
    assert [l.name for l in model.layers] == steps[:1] + ["image_sizes"] + steps[1:]
    graphs = {
        model: [
            steps,
            ["proposals", "detections"],
        ],
        convolutions: [
            ["preprocessed", "resnet101_trunk", "rpn_conv", "rpn_objectness"],
            ["resnet101_trunk", "resnet101_conv5", "reduce", "class_maps"],
            ["rpn_conv", "rpn_deltas"],
            ["reduce", "box_maps"],
        ],
        roi_head: [
            ["class_maps", "class_pool", "class_vote"],
            ["box_maps", "box_pool", "box_vote"],
            ["rois", "class_pool"],
            ["rois", "box_pool"],
        ],
    }
    for graph, chains in graphs.items():
        for chain in chains:
            for before, after in zip(chain, chain[1:]):  # (a nested model: by its neighbours)
                assert upstream(graph, after) is None or before in upstream(graph, after), (before, after)
                assert upstream(graph, before) is None or after not in upstream(graph, before)
    assert "resnet101_trunk" in upstream(convolutions, "rpn_conv")
    assert {"resnet101_trunk", "resnet101_conv5"} <= upstream(convolutions, "reduce")
    assert "resnet101_conv5" not in upstream(convolutions, "rpn_objectness") | upstream(
        convolutions, "rpn_deltas"
    )
    assert "box_pool" not in upstream(roi_head, "class_vote")
    assert (
        not keras.Model.get_layer(model, "proposals").weights and not roi_head.weights
    )  # R-FCN's per-RoI step
    # The summary lists the steps with their shapes.
    lines = []
    model.summary(expand_nested=True, line_length=150, print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    assert "conv4_block23_out (" in text and "conv5_block3_out (" in text
    assert "(None, None, None, 1029)" in text  # k²(C+1) class maps: 7·7·21
    assert "(None, 300, 4)" in text  # the proposals


def test_position_sensitive_maps_from_the_graph():
    model = small_model()
    raw = model.features_model(
        {"images": np.zeros((2, 192, 256, 3), np.float32), "image_sizes": np.array([[192, 256], [150, 200]])}
    )
    assert raw["class_maps"].shape == (2, 12, 16, 3 * 3 * 5)
    roi_head = model.roi_head
    bins = keras.Model(roi_head.input, roi_head.get_layer("class_pool").output)(
        {"class_maps": raw["class_maps"], "box_maps": raw["box_maps"], "rois": raw["proposals"]}
    )
    assert bins.shape == (2, 100, 3, 3, 5)


def test_plot_model_draws_rfcn(tmp_path):
    model = small_model(feature_stride=8)
    path = tmp_path / "rfcn.png"
    keras.utils.plot_model(model, to_file=str(path), show_shapes=True, show_layer_names=True)
    from PIL import Image

    with Image.open(path) as picture:
        assert picture.format == "PNG" and min(picture.size) > 1000  # 9 layers, not one box


def test_training_true_returns_the_detections_and_get_layer_reaches_the_parts():
    model = small_model()
    images = np.random.default_rng(0).uniform(0, 255, (1, 96, 128, 3)).astype(np.float32)
    out = model(images, training=True)
    assert set(out) == OUTPUT_KEYS and out["boxes"].shape == (1, 100, 4)
    assert model.get_layer("rpn_conv") is model.convolutions.get_layer("rpn_conv")
    assert model.get_layer("class_pool") is model.roi_head.get_layer("class_pool")
    assert model.get_layer("class_maps") is model.convolutions.get_layer("class_maps")  # not the Input
    assert model.get_layer("proposals") is model.layers[6]
    with pytest.raises(ValueError, match="no layer named 'nope' in this RFCN: the top level has"):
        model.get_layer("nope")


@pytest.mark.slow
def test_resnet101_full_forward_at_600x1000(resnet101_model):
    out = resnet101_model.predict(random_image(600, 1000, 0)[None], verbose=0)
    assert set(out) == OUTPUT_KEYS
    assert out["boxes"].shape == (1, 100, 4)
    n = int(out["num_detections"][0])
    boxes = out["boxes"][0, :n]
    assert np.all(boxes[:, 2] <= 600 + 1e-3) and np.all(boxes[:, 3] <= 1000 + 1e-3)
    assert np.all(boxes >= 0)
    assert np.all(out["labels"][0, n:] == -1)
    assert np.all((out["labels"][0, :n] >= 0) & (out["labels"][0, :n] < 20))


@pytest.mark.slow
def test_backbone_weights_from_file_and_freezing(tmp_path):
    trunk, conv5 = build_backbone("resnet50", None, dilated_conv5=False)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    path = str(tmp_path / "resnet50_notop.weights.h5")
    base.save_weights(path)
    trunk, conv5 = build_backbone("resnet50", path, dilated_conv5=True)
    np.testing.assert_array_equal(
        trunk.get_layer("conv1_conv").get_weights()[0], base.get_layer("conv1_conv").get_weights()[0]
    )
    np.testing.assert_array_equal(
        conv5.get_layer("conv5_block2_2_conv").get_weights()[0],
        base.get_layer("conv5_block2_2_conv").get_weights()[0],
    )
    # Loaded weights → conv1, res2 and every BatchNorm frozen by default.
    model = RFCN(num_classes=3, backbone="resnet50", backbone_weights=path)
    assert model.config.freeze_stem and model.config.freeze_batchnorm
    np.testing.assert_array_equal(
        model.trunk.get_layer("conv1_conv").get_weights()[0], base.get_layer("conv1_conv").get_weights()[0]
    )
    assert not model.trunk.get_layer("conv1_conv").trainable
    assert not model.trunk.get_layer("conv2_block1_1_conv").trainable
    assert model.trunk.get_layer("conv3_block1_1_conv").trainable
    assert not model.conv5.get_layer("conv5_block1_1_bn").trainable
    assert all(l.trainable for l in RFCN(num_classes=3, backbone="resnet50").trunk.layers)
    with pytest.raises(FileNotFoundError, match="not found"):
        build_backbone("resnet50", str(tmp_path / "missing.h5"))


def test_small_backbone_at_stride_8():
    model = small_model(feature_stride=8, min_side=128, max_side=160)
    raw = model.features_model({"images": np.zeros((1, 128, 160, 3), np.float32), "image_sizes": None})
    assert raw["class_maps"].shape == (1, 16, 20, 3 * 3 * 5)
    assert raw["box_maps"].shape == (1, 16, 20, 4 * 3 * 3)
    assert raw["rpn_logits"].shape == (1, 16, 20, 12)  # 4 scales × 3 ratios
    centres = (raw["anchors"].numpy()[:, :2] + raw["anchors"].numpy()[:, 2:]) / 2
    assert sorted(set(centres[:, 0].round(3)))[:3] == [4.0, 12.0, 20.0]
    assert model.get_layer("class_pool").spatial_scale == 1 / 8
    assert model.trunk.output.shape[-1] == 128  # half as wide as at stride 16
    with pytest.raises(ValueError, match="output stride 16"):
        build_backbone("resnet50", None, output_stride=8)


@pytest.mark.slow
def test_the_model_resizes_to_its_scale_and_maps_boxes_back():
    model = small_model(min_side=96, max_side=200)
    sharpen(model)
    scaled = keras.Model(model.input, model.get_layer("resize").output)
    image = random_image(48, 80, 11)
    resized, sizes, scales = scaled({"images": image[None], "image_sizes": None})
    assert resized.shape == (1, 96, 160, 3)
    np.testing.assert_array_equal(sizes, [[96, 160]])
    np.testing.assert_allclose(scales, [[2.0, 2.0]])
    # Boxes come back in the input's pixels: those of the same image at the model's own
    # scale, halved.
    at_scale = model.predict(resized.numpy(), verbose=0)
    out = model.predict(image[None], verbose=0)
    n = int(out["num_detections"][0])
    assert n > 0 and int(at_scale["num_detections"][0]) == n
    np.testing.assert_allclose(out["boxes"][0, :n], at_scale["boxes"][0, :n] / 2, atol=1e-3)
    assert np.all(out["boxes"][0, :n, 2] <= 48 + 1e-3) and np.all(out["boxes"][0, :n, 3] <= 80 + 1e-3)


@pytest.mark.slow
def test_predict_takes_a_list_of_images_of_different_sizes():
    model = small_model()
    sharpen(model)
    a, b = random_image(150, 200, 12), random_image(100, 90, 13)
    out = model.predict([a, b], verbose=0)
    for i, image in enumerate((a, b)):
        single = model.predict(image[None], verbose=0)
        n = int(single["num_detections"][0])
        assert int(out["num_detections"][i]) == n
        np.testing.assert_allclose(out["confidence"][i, :n], single["confidence"][0, :n], atol=1e-5)
    with pytest.raises(ValueError, match="pack_images"):
        model.predict([a[None], b[None]], verbose=0)


def test_an_old_format_model_file_is_refused_with_a_message():
    config = small_model().get_config()
    del config["format_version"]
    with pytest.raises(ValueError, match=r"layout 1, written by rfcn_tf 0\.1"):
        RFCN.from_config(config)
    config["format_version"] = 4
    with pytest.raises(ValueError, match="layout 4, written by a newer rfcn_tf"):
        RFCN.from_config(config)


@pytest.mark.slow
@pytest.mark.parametrize("head, stride", [("rfcn", 16), ("faster_rcnn", 16), ("rfcn", 8)])
def test_output_contract_and_keras_round_trip(tmp_path, head, stride):
    model = small_model(head=head, feature_stride=stride)
    sharpen(model)
    images = np.stack([random_image(128, 160, 1), random_image(128, 160, 2)])
    out = model.predict(images, verbose=0)
    assert set(out) == OUTPUT_KEYS
    assert out["labels"].dtype == np.int32 and out["num_detections"].shape == (2,)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, RFCN) and reloaded.config == model.config
    again = reloaded.predict(images, verbose=0)
    for key in OUTPUT_KEYS:
        np.testing.assert_allclose(again[key], out[key], atol=1e-5)


def test_config_round_trip():
    config = RFCNConfig.small(num_classes=3, class_names=("a", "b", "c"), head="faster_rcnn")
    assert RFCNConfig.from_dict(config.to_dict()) == config
    model = RFCN(config=config)
    rebuilt = RFCN.from_config(model.get_config())
    assert rebuilt.config == config.replace(freeze_stem=False, freeze_batchnorm=False)
    assert rebuilt.get_layer("class_logits").units == 4  # the Faster R-CNN head


def test_keyword_construction_overrides_config():
    model = RFCN(config=RFCNConfig.small(num_classes=3), num_classes=7, k=5)
    assert model.config.num_classes == 7 and model.config.k == 5
    assert model.get_layer("class_maps").filters == 5 * 5 * 8


@pytest.mark.slow
@pytest.mark.parametrize("head, stride", [("rfcn", 16), ("faster_rcnn", 16), ("rfcn", 8)])
def test_mixed_size_batch_equals_one_image_at_a_time(head, stride):
    model = small_model(head=head, feature_stride=stride)
    sharpen(model)
    images = [random_image(150, 200, 3), random_image(208, 120, 4), random_image(96, 96, 5)]
    batch = model.predict(pack_images(images), verbose=0)
    for i, image in enumerate(images):
        single = model.predict(image[None], verbose=0)
        n = int(single["num_detections"][0])
        assert n > 0
        assert int(batch["num_detections"][i]) == n
        # Float rounding of the crop coordinates differs with the map size: 0.01 px.
        np.testing.assert_allclose(batch["boxes"][i, :n], single["boxes"][0, :n], atol=1e-2)
        np.testing.assert_allclose(batch["confidence"][i, :n], single["confidence"][0, :n], atol=1e-5)
        np.testing.assert_array_equal(batch["labels"][i, :n], single["labels"][0, :n])
        h, w = image.shape[:2]
        assert np.all(batch["boxes"][i, :n, 2] <= h) and np.all(batch["boxes"][i, :n, 3] <= w)


def test_uint8_and_float_inputs_agree():
    model = small_model()
    image = random_image(64, 80, 6).round()
    a = model.predict(image[None].astype(np.uint8), verbose=0)
    b = model.predict(image[None], verbose=0)
    np.testing.assert_allclose(a["confidence"], b["confidence"], atol=1e-6)


@pytest.mark.slow
def test_bounding_box_format_of_outputs():
    yxyx = small_model()
    sharpen(yxyx)
    xyxy = RFCN(config=yxyx.config.replace(bounding_box_format="xyxy"))
    xyxy.set_weights(yxyx.get_weights())
    image = random_image(96, 128, 7)[None]
    a = yxyx.predict(image, verbose=0)["boxes"]
    b = xyxy.predict(image, verbose=0)["boxes"]
    np.testing.assert_allclose(b, a[..., [1, 0, 3, 2]], atol=1e-5)
    with pytest.raises(ValueError, match="bounding_box_format"):
        RFCNConfig.small(bounding_box_format="rel_yxyx")


@pytest.mark.slow
def test_tiny_images_do_not_crash():
    model = small_model()
    for shape in [(1, 1), (20, 17), (16, 400)]:
        out = model.predict(np.zeros((1, *shape, 3), np.uint8), verbose=0)
        n = int(out["num_detections"][0])
        assert np.all(out["boxes"][0, :n, 2] <= shape[0] + 1e-4)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((64, 64, 3), np.float32), r"\[batch, height, width, 3\]"),
        (np.zeros((1, 64, 64, 4), np.float32), r"\[batch, height, width, 3\]"),
        (np.zeros((0, 64, 64, 3), np.float32), "empty batch"),
        (np.array([[["a"] * 3] * 4] * 4)[None], "uint8 or float"),
    ],
)
def test_bad_images_raise_clear_errors(bad, message):
    model = small_model()
    with pytest.raises(ValueError, match=message):
        model.predict(bad, verbose=0)


def test_predict_names_the_shape_passed_and_a_nan_before_the_graph():
    """Keras's predict cuts arrays into batches of 32 rows (a [200, 240, 3] image would be
    reported as (32, 240, 3)) and runs the graph (a NaN would end a long trace): both are
    refused first, the exception's first line saying what was wrong."""
    model = small_model()
    with pytest.raises(ValueError) as error:
        model.predict(random_image(200, 240, 1), verbose=0)
    assert str(error.value).splitlines()[0] == (
        "RFCN expects RGB images of shape [batch, height, width, 3]; got shape (200, 240, 3); "
        "one image needs a batch axis: images[None]"
    )
    image = random_image(40, 48, 2)
    image[5, 7, 1] = np.inf
    batch = np.stack([random_image(40, 48, 3), image])
    for x in (batch, {"images": batch, "image_sizes": np.array([[40, 48], [40, 48]])}, [batch[0], image]):
        with pytest.raises(ValueError) as error:
            model.predict(x, verbose=0)
        assert str(error.value).splitlines()[0] == (
            "images contain NaN or Inf (first at [image, row, column, channel] = [1, 5, 7, 1])"
        )


def test_nan_image_and_oversized_image_sizes_raise():
    model = small_model()
    image = random_image(32, 32, 8)
    image[3, 3, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        model(image[None])
    with pytest.raises(tf.errors.InvalidArgumentError, match="image_sizes must not exceed"):
        model({"images": random_image(32, 32, 9)[None], "image_sizes": np.array([[40, 32]])})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"backbone": "vgg"}, "backbone"),
        ({"head": "ssd"}, "head"),
        ({"num_classes": 0}, "num_classes"),
        ({"psroi_mode": "max"}, "psroi_mode"),
        ({"class_names": ("a",)}, "class_names"),
        ({"feature_stride": 12}, "feature_stride of the small backbone must be one of \\(8, 16\\)"),
        ({"backbone": "resnet50", "feature_stride": 8}, "feature_stride of resnet50 must be 16"),
    ],
)
def test_bad_config_raises(change, message):
    with pytest.raises(ValueError, match=message):
        RFCNConfig.small(**{"num_classes": 4, **change})
