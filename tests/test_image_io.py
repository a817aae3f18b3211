import functools
import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from rfcn_tf.image_io import MAX_IMAGE_PIXELS, decode_image, read_image
from tests.image_headers import BOMBS, gif
from tests.image_headers import png as _png_declaring

SPEC = [tf.TensorSpec([], tf.string)]
graph_decode = tf.function(lambda data: decode_image(data), input_signature=SPEC)

HEIGHT, WIDTH = 37, 53  # not square, so swapped axes show up


def _pixels(height=HEIGHT, width=WIDTH, channels=3, seed=0):
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.RandomState(seed).randint(0, 256, shape).astype(np.uint8)


def _write(tmp_path, image, name, **save_args):
    """Save a PIL image (or uint8 array) to tmp_path/name; return (path, bytes)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    path = tmp_path / name
    image.save(path, **save_args)
    return path, path.read_bytes()


def _animation(tmp_path, name, mode, **save_args):
    frames = [Image.fromarray(_pixels(channels=4, seed=seed)).convert(mode) for seed in (1, 2)]
    path = tmp_path / name
    frames[0].save(path, save_all=True, append_images=frames[1:], **save_args)
    return path, path.read_bytes()


STILL_IMAGES = {
    "png_rgb": (lambda: _pixels(), "PNG", {}),
    "png_gray": (lambda: _pixels(channels=1), "PNG", {}),
    "png_rgba": (lambda: _pixels(channels=4), "PNG", {}),
    "jpeg_baseline": (lambda: _pixels(), "JPEG", {}),
    "jpeg_progressive": (lambda: _pixels(), "JPEG", {"progressive": True}),
    "jpeg_gray": (lambda: _pixels(channels=1), "JPEG", {}),
    "gif": (lambda: _pixels(), "GIF", {}),
    "bmp": (lambda: _pixels(), "BMP", {}),
    "webp_lossy": (lambda: _pixels(), "WEBP", {"quality": 80}),
    "webp_lossless": (lambda: _pixels(), "WEBP", {"lossless": True}),
    "webp_alpha": (lambda: _pixels(channels=4), "WEBP", {"quality": 80}),  # VP8X
}


@pytest.fixture(params=sorted(STILL_IMAGES))
def still_image(request, tmp_path):
    make, image_format, save_args = STILL_IMAGES[request.param]
    path, data = _write(tmp_path, make(), f"{request.param}.img", format=image_format, **save_args)
    with Image.open(path) as image:
        width, height = image.size
    return data, (height, width)


def test_webp_fixtures_cover_all_three_header_kinds(tmp_path):
    seen = set()
    for key in ("webp_lossy", "webp_lossless", "webp_alpha"):
        make, image_format, save_args = STILL_IMAGES[key]
        _, data = _write(tmp_path, make(), f"{key}.webp", format=image_format, **save_args)
        seen.add(data[12:16])
    assert seen == {b"VP8 ", b"VP8L", b"VP8X"}


def test_top_down_bmp_reports_positive_height(tmp_path):
    _, data = _write(tmp_path, _pixels(), "bottom_up.bmp")
    (height,) = struct.unpack("<i", data[22:26])
    top_down = data[:22] + struct.pack("<i", -height) + data[26:]
    for decode in (decode_image, graph_decode):
        image, size = decode(top_down)
        assert tuple(size.numpy()) == (HEIGHT, WIDTH) and image.shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"", "empty, no image to decode"),
        (b"not an image at all", "header is truncated or invalid"),
        (b"\x89PNG\r\n\x1a\n", "header is truncated or invalid"),
        (_png_declaring(5, 5)[:20], "header is truncated or invalid"),
        (b"GIF89a\x01", "header is truncated or invalid"),
    ],
    ids=["empty", "text", "png_signature_only", "png_truncated_ihdr", "gif_truncated"],
)
def test_unknown_or_truncated_headers_are_refused_before_decoding(data, problem):
    for decode in (decode_image, graph_decode):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            decode(data)
        assert "image bytes: " in error.value.message and problem in error.value.message


def test_decode_matches_tensorflow_and_is_rgb(still_image):
    data, (height, width) = still_image
    # TF's WebP decoder only accepts the stored channel count.
    expected = tf.io.decode_image(data, expand_animations=False).numpy()
    expected = np.broadcast_to(expected, (height, width, max(expected.shape[-1], 3)))[..., :3]
    for image, size in (decode_image(data), graph_decode(data)):
        assert image.dtype == tf.uint8
        np.testing.assert_array_equal(image.numpy(), expected)
        assert tuple(size.numpy()) == (height, width)


def test_animated_gif_decodes_first_frame(tmp_path):
    _, data = _animation(tmp_path, "anim.gif", "RGB")
    image, size = decode_image(data)
    assert tuple(size.numpy()) == (HEIGHT, WIDTH)
    np.testing.assert_array_equal(image.numpy(), tf.io.decode_gif(data)[0].numpy())


def test_animated_webp_with_alpha_decodes_first_frame(tmp_path):
    _, data = _animation(tmp_path, "anim_alpha.webp", "RGBA", lossless=True)
    image, size = graph_decode(data)
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert tuple(size.numpy()) == (HEIGHT, WIDTH)


def test_animated_webp_without_alpha_is_refused_before_decoding(tmp_path):
    # TF 2.21 corrupts the heap decoding these, so reaching the decoder would crash.
    _, data = _animation(tmp_path, "anim.webp", "RGB", lossless=True)
    assert data[12:16] == b"VP8X" and data[20] & 0x12 == 0x02
    for decode in (decode_image, graph_decode):
        with pytest.raises(tf.errors.InvalidArgumentError, match="animated WebP without alpha"):
            decode(data)


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_decompression_bombs_are_refused_from_the_header(kind):
    """Headers declaring more than MAX_IMAGE_PIXELS (hand-written: tests/image_headers.py)
    are refused before any decoder runs — none of them holds the pixels it declares."""
    data, declared = BOMBS[kind]
    width, height = (int(v) for v in declared.split("x"))
    message = (
        f"image declares {declared} pixels ({width * height}), more than the limit of "
        f"{MAX_IMAGE_PIXELS}; resize it before sending"
    )
    for decode in (decode_image, graph_decode):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            decode(data)
        assert message in error.value.message
    with pytest.raises(ValueError, match=rf"^image bytes: image declares {declared} pixels"):
        read_image(data)


def test_a_gif_frame_larger_than_its_canvas_is_found_after_real_frames():
    """giflib allocates every frame at its own size: the check walks the whole file (a
    PIL-written frame of real image data and extensions, then the oversized one)."""
    buffer = io.BytesIO()
    Image.fromarray(_pixels(120, 160)).save(buffer, "GIF", comment=b"a comment")
    real = buffer.getvalue()
    assert real[-1:] == b";" and len(real) > 4 * 256  # several 255-byte sub-blocks
    image, size = decode_image(real, max_pixels=120 * 160)  # its own frame: within the limit
    assert image.shape == (120, 160, 3) and tuple(size.numpy()) == (120, 160)
    oversized = real[:-1] + gif(16, 16, frame=(400, 300))[13 + 6 :]  # a second frame, then ";"
    assert struct.unpack("<HH", oversized[6:10]) == (160, 120)  # the canvas (width, height): within
    limited = functools.partial(decode_image, max_pixels=120 * 160)
    for decode in (limited, tf.function(limited, input_signature=SPEC)):
        with pytest.raises(tf.errors.InvalidArgumentError, match="declares 400x300 pixels"):
            decode(oversized)


def test_max_pixels_is_inclusive(tmp_path):
    _, data = _write(tmp_path, _pixels(), "small.png")
    image, _ = decode_image(data, max_pixels=HEIGHT * WIDTH)
    assert image.shape == (HEIGHT, WIDTH, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"declares {WIDTH}x{HEIGHT} pixels"):
        decode_image(data, max_pixels=HEIGHT * WIDTH - 1)


@pytest.fixture(scope="module")
def large_jpeg(tmp_path_factory):
    """1600 wide x 1200 high JPEG with smooth content (small file, quick to encode)."""
    rows, cols = np.mgrid[0:1200, 0:1600]
    pixels = np.stack([rows % 256, cols % 256, (rows + cols) % 256], axis=-1).astype(np.uint8)
    _, data = _write(tmp_path_factory.mktemp("jpeg"), pixels, "large.jpg", quality=90)
    return data


@pytest.mark.parametrize(
    "target, decoded",
    [
        ((300, 400), (300, 400)),
        ((301, 400), (600, 800)),
        ((300, 401), (600, 800)),
        ((150, 200), (150, 200)),
        ((149, 199), (150, 200)),
        ((1200, 1600), (1200, 1600)),
        ((1201, 1600), (1200, 1600)),
    ],
)
def test_jpeg_decodes_at_largest_ratio_not_below_target(large_jpeg, target, decoded):
    def target_size(height, width):
        return tf.constant(target[0]), tf.constant(target[1])

    decode = tf.function(lambda data: decode_image(data, target_size), input_signature=SPEC)
    for image, size in (decode_image(large_jpeg, target_size), decode(large_jpeg)):
        assert image.shape == (*decoded, 3)
        assert tuple(size.numpy()) == (1200, 1600)


def test_jpeg_ratio_rounds_decoded_size_up(tmp_path):
    _, data = _write(tmp_path, _pixels(1001, 799), "odd.jpg")
    # Exactly the 1/8 scale, which libjpeg rounds up: ceil(1001 / 8), ceil(799 / 8).
    image, size = decode_image(data, target_size=lambda h, w: (126, 100))
    assert image.shape == (126, 100, 3)
    assert tuple(size.numpy()) == (1001, 799)


def test_target_size_receives_header_size_and_ratio_1_matches_decode_image(large_jpeg):
    seen = []

    def target_size(height, width):
        seen.append((int(height), int(width)))
        return height, width

    image, _ = decode_image(large_jpeg, target_size)
    assert seen == [(1200, 1600)]
    expected = tf.io.decode_image(large_jpeg, channels=3).numpy()
    np.testing.assert_array_equal(image.numpy(), expected)


def test_target_size_does_not_shrink_other_formats(tmp_path):
    _, data = _write(tmp_path, _pixels(), "full.png")
    image, _ = decode_image(data, target_size=lambda h, w: (h // 8, w // 8))
    assert image.shape == (HEIGHT, WIDTH, 3)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "image bytes: empty"),
        (b"definitely not an image", "image bytes: not a PNG, JPEG, GIF, BMP or WebP image"),
        (_png_declaring(4, 4)[:23], "image bytes: not a PNG"),  # IHDR cut inside the height
    ],
    ids=["empty", "unknown", "truncated"],
)
def test_refused_before_decoding_with_clear_message(data, message):
    for decode in (decode_image, graph_decode):
        with pytest.raises(tf.errors.InvalidArgumentError) as error:
            decode(data)
        assert message in error.value.message


def test_corrupt_png_data_raises_invalid_argument(tmp_path):
    _, data = _write(tmp_path, _pixels(), "corrupt.png")
    corrupt = data[:60] + bytes(len(data) - 60)
    for decode in (decode_image, graph_decode):
        with pytest.raises(tf.errors.InvalidArgumentError, match="PNG"):
            decode(corrupt)


def test_read_image_from_path_and_bytes(tmp_path):
    pixels = _pixels()
    path, data = _write(tmp_path, pixels, "photo.png")
    for source in (path, str(path), data):
        image, size = read_image(source)
        assert isinstance(image, np.ndarray) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, pixels)
        assert size == (HEIGHT, WIDTH)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"garbage that is no image", "not a PNG, JPEG, GIF, BMP or WebP image"),
        (b"\xff\xd8\xff\xe0 broken jpeg header", "Invalid JPEG data"),
        (_png_declaring(30000, 30000), "declares 30000x30000 pixels"),
    ],
    ids=["empty", "unknown", "corrupt_jpeg", "too_large"],
)
def test_read_image_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad_upload.jpg"
    path.write_bytes(content)
    with pytest.raises(ValueError) as error:
        read_image(path)
    text = str(error.value)
    assert text.startswith(f"{path}: ") and message in text
    assert "\n" not in text and "[Op:" not in text and "{{" not in text


def test_read_image_corrupt_png_message_is_one_clean_line(tmp_path):
    _, data = _write(tmp_path, _pixels(), "corrupt.png")
    with pytest.raises(ValueError) as error:
        read_image(data[:60] + bytes(len(data) - 60))
    assert str(error.value) == f"image bytes: Invalid PNG data, size {len(data)}"


def test_read_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")
