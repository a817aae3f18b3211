"""Safe decoding of encoded images (PNG, JPEG, GIF, BMP, WebP).

The image size is read from the file header first, so oversized images are
refused before any pixel buffer is allocated, and large JPEGs are decoded
directly at a reduced scale when the caller is going to shrink them anyway.
Everything except :func:`read_image` also runs inside a ``tf.function``.
"""

import os
import re

import tensorflow as tf

MAX_IMAGE_PIXELS = 2**27

_UNKNOWN, _JPEG, _PNG, _GIF, _BMP, _WEBP = range(6)
_MAGIC = {_JPEG: b"\xff\xd8\xff", _PNG: b"\x89PNG\r\n\x1a\n", _GIF: b"GIF8", _BMP: b"BM"}
_HEADER_BYTES = 32
_INT32_MAX = 2**31 - 1
_JPEG_RATIOS = (1, 2, 4, 8)
_FORMATS = "a PNG, JPEG, GIF, BMP or WebP image"


def _matches(head, offset, magic):
    """Whether `head` (uint8 [32]) holds the bytes `magic` at `offset`."""
    expected = tf.constant(list(magic), tf.uint8)
    return tf.reduce_all(tf.equal(head[offset : offset + len(magic)], expected))


def _uint(head, offset, length, big_endian=False):
    """Unsigned integer of `length` bytes at `offset` in `head`, as int64."""
    weights = [256**i for i in range(length)]
    if big_endian:
        weights.reverse()
    value = tf.cast(head[offset : offset + length], tf.int64)
    return tf.reduce_sum(value * tf.constant(weights, tf.int64))


def _header(data):
    """Return (format id, first 32 bytes as uint8 [32] zero-padded, byte length)."""
    head = tf.io.decode_raw(data, tf.uint8, fixed_length=_HEADER_BYTES)
    length = tf.strings.length(data)
    # Same signatures as TensorFlow's own DecodeImage, so both pick the same decoder.
    found = {kind: _matches(head, 0, magic) for kind, magic in _MAGIC.items()}
    found[_WEBP] = _matches(head, 0, b"RIFF") & _matches(head, 8, b"WEBP") & (length > 12)
    kind = tf.reduce_max(tf.where(tf.stack(list(found.values())), list(found.keys()), _UNKNOWN))
    return kind, head, length


def _webp_size(head, length):
    """(header valid, (height, width) int64) of a lossy, lossless or extended WebP."""

    def lossy():
        ok = _matches(head, 23, b"\x9d\x01\x2a") & (length >= 30)
        return ok, tf.bitwise.bitwise_and(tf.stack([_uint(head, 28, 2), _uint(head, 26, 2)]), 0x3FFF)

    def lossless():
        bits = _uint(head, 21, 4)
        width = tf.bitwise.bitwise_and(bits, 0x3FFF) + 1
        height = tf.bitwise.bitwise_and(tf.bitwise.right_shift(bits, 14), 0x3FFF) + 1
        return (head[20] == 0x2F) & (length >= 25), tf.stack([height, width])

    def extended():
        size = tf.stack([_uint(head, 27, 3), _uint(head, 24, 3)]) + 1
        return length >= 30, size

    def unknown():
        return tf.constant(False), tf.constant([-1, -1], tf.int64)

    return tf.case(
        [
            (_matches(head, 12, b"VP8 "), lossy),
            (_matches(head, 12, b"VP8L"), lossless),
            (_matches(head, 12, b"VP8X"), extended),
        ],
        default=unknown,
    )


@tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
def _gif_largest_frame(data):
    """(height, width) int32 [2] of the largest frame (by area) a GIF's image descriptors
    declare; [0, 0] if none. giflib allocates every frame at its own size, which may exceed
    the canvas. The walk follows the blocks (an extension or image descriptor, then a chain
    of sub-blocks ended by a zero size byte) and stops at the trailer, an unknown block or
    the end of the data; one step per block or sub-block, without branches."""
    raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
    end = tf.size(raw, out_type=tf.int64)
    raw = tf.concat([raw, tf.zeros([16], tf.int64)], 0)  # reads past the end see zeros

    def table(packed):  # bytes of the colour table a packed field announces
        entries = tf.bitwise.left_shift(tf.constant(2, tf.int64), tf.bitwise.bitwise_and(packed, 7))
        return tf.where(packed >= 0x80, 3 * entries, 0)

    def step(at, in_chain, best):
        b = raw[at : at + 10]
        frame = tf.stack([b[7] + 256 * b[8], b[5] + 256 * b[6]])
        image = ~in_chain & tf.equal(b[0], 0x2C)
        block_end = tf.where(image, at + 11 + table(b[9]), tf.where(tf.equal(b[0], 0x21), at + 2, end))
        # Encoders write full 255-byte sub-blocks: skip a run of up to 64 of them at once.
        full = tf.gather(raw, tf.minimum(at + 256 * tf.range(64, dtype=tf.int64), end)) == 255
        run = tf.reduce_sum(tf.math.cumprod(tf.cast(full, tf.int64)))
        chain_end = tf.where(run > 0, at + 256 * run, at + 1 + b[0])
        larger = frame[0] * frame[1] > best[0] * best[1]
        return (
            tf.where(in_chain, chain_end, block_end),
            ~in_chain | (b[0] > 0),
            tf.where(image & larger, frame, best),
        )

    _, _, best = tf.while_loop(
        lambda at, in_chain, best: at < end,
        step,
        [13 + table(raw[10]), tf.constant(False), tf.zeros([2], tf.int64)],
    )
    return tf.cast(best, tf.int32)


def _declared_size(data, kind, head, length):
    """(height, width) int32 [2] from the header; [-1, -1] if unknown or invalid."""

    def jpeg():
        # extract_jpeg_shape raises on anything but a JPEG, so it lives here only.
        size = tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64)
        return tf.constant(True), size

    def png():
        ok = _matches(head, 12, b"IHDR") & (length >= 24)
        size = tf.stack([_uint(head, 20, 4, True), _uint(head, 16, 4, True)])
        return ok, size

    def gif():
        return length >= 10, tf.stack([_uint(head, 8, 2), _uint(head, 6, 2)])

    def bmp():
        # Signed int32 fields; a negative height marks a top-down bitmap.
        width, height = _uint(head, 18, 4), _uint(head, 22, 4)
        width = tf.where(width > _INT32_MAX, width - 2**32, width)
        height = tf.where(height > _INT32_MAX, height - 2**32, height)
        return length >= 26, tf.stack([tf.abs(height), width])

    def webp():
        return _webp_size(head, length)

    def unknown():
        return tf.constant(False), tf.constant([-1, -1], tf.int64)

    ok, size = tf.switch_case(kind, [unknown, jpeg, png, gif, bmp, webp])
    valid = ok & tf.reduce_all((size >= 1) & (size <= _INT32_MAX))
    return tf.cast(tf.where(valid, size, -1), tf.int32)


def _check(problem):
    """Control inputs that fail with InvalidArgumentError(problem) unless it is ""."""
    if tf.executing_eagerly():
        # Eager tf.debugging.Assert would wrap the message in a tensor repr.
        if problem.numpy():
            raise tf.errors.InvalidArgumentError(None, None, problem.numpy().decode())
        return []
    return [tf.debugging.Assert(tf.equal(problem, ""), [problem])]


def _jpeg_ratio_index(size, target_size):
    """Index into _JPEG_RATIOS of the largest ratio still >= target per axis."""
    target = target_size(size[0], size[1])
    fits = [
        ((size[0] + ratio - 1) // ratio >= target[0]) & ((size[1] + ratio - 1) // ratio >= target[1])
        for ratio in _JPEG_RATIOS[1:]
    ]
    # Decoded sizes shrink as the ratio grows, so the fitting ratios are a prefix.
    return tf.add_n([tf.cast(fit, tf.int32) for fit in fits])


def decode_image(data, target_size=None, max_pixels=MAX_IMAGE_PIXELS, name="image bytes"):
    """Decode encoded image bytes to RGB after checking the declared size.

    Grayscale is repeated to RGB, alpha is dropped, and only the first frame of
    an animation is decoded.

    Args:
      data: scalar tf.string, the encoded PNG, JPEG, GIF, BMP or WebP file.
      target_size: None, or a callable `(height, width) -> (h, w)` on int32
        scalars giving the size the caller will resize to. A JPEG is then
        decoded at the largest scale 1/1, 1/2, 1/4 or 1/8 that is still at
        least that size on both axes; other formats decode at full size.
      max_pixels: refuse images whose header declares more pixels than this
        (a GIF: its canvas or any of its frames, which are decoded at their own size).
      name: how the input is called in error messages.

    Returns:
      (image uint8 [H', W', 3], original_size int32 [2]) where original_size
      is the (height, width) from the header, i.e. before any JPEG scaling.

    Raises:
      tf.errors.InvalidArgumentError: empty input, unknown format, too many
        declared pixels (all before decoding), or undecodable data.
    """
    data = tf.convert_to_tensor(data, tf.string)
    kind, head, length = _header(data)
    size = _declared_size(data, kind, head, length)
    # The larger of the canvas and (GIF) its largest frame: what the decoder allocates.
    frame = tf.cond(tf.equal(kind, _GIF), lambda: _gif_largest_frame(data), lambda: tf.zeros([2], tf.int32))
    allocated = tf.where(
        tf.reduce_prod(tf.cast(frame, tf.int64)) > tf.reduce_prod(tf.cast(size, tf.int64)), frame, size
    )
    height, width = allocated[0], allocated[1]
    pixels = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    # TF 2.21's WebP animation decoder writes RGBA frames into a buffer sized
    # for RGB when the header has no alpha flag: heap corruption, not an error.
    opaque_animation = (
        tf.equal(kind, _WEBP)
        & _matches(head, 12, b"VP8X")
        & tf.equal(tf.bitwise.bitwise_and(head[20], 0x12), 0x02)
    )
    problem = tf.case(
        [
            (tf.equal(length, 0), lambda: tf.constant(f"{name}: empty, no image to decode")),
            (
                size[0] < 0,
                lambda: tf.constant(f"{name}: not {_FORMATS}, or its header is truncated or invalid"),
            ),
            (
                opaque_animation,
                lambda: tf.constant(
                    f"{name}: animated WebP without alpha channel is not supported; send a still image"
                ),
            ),
            (
                pixels > max_pixels,
                lambda: tf.strings.join(
                    [
                        f"{name}: image declares ",
                        tf.strings.as_string(width),
                        "x",
                        tf.strings.as_string(height),
                        " pixels (",
                        tf.strings.as_string(pixels),
                        f"), more than the limit of {max_pixels}; resize it before sending",
                    ]
                ),
            ),
        ],
        default=lambda: tf.constant(""),
    )

    def decode_any():
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    def decode_jpeg():
        decoders = [
            lambda ratio=ratio: tf.io.decode_jpeg(data, channels=3, ratio=ratio) for ratio in _JPEG_RATIOS
        ]
        return tf.switch_case(_jpeg_ratio_index(size, target_size), decoders)

    def decode_webp():
        # TF refuses channels=3 for WebP with alpha, so decode as stored and drop it.
        return tf.io.decode_image(data, expand_animations=False)[:, :, :3]

    decoders = [decode_any, decode_webp]
    branch = tf.cast(tf.equal(kind, _WEBP), tf.int32)
    if target_size is not None:
        decoders.append(decode_jpeg)
        branch = tf.where(tf.equal(kind, _JPEG), 2, branch)
    with tf.control_dependencies(_check(problem)):
        image = tf.switch_case(branch, decoders)
    image.set_shape([None, None, 3])
    return image, size


def _tf_message(error):
    """First line of a TensorFlow error message without its op decorations."""
    line = error.message.strip().splitlines()[0]
    line = re.sub(r"^\{\{[^}]*\}\}\s*", "", line)
    return re.sub(r"\s*\[Op:.*$", "", line)


def read_image(path_or_bytes, target_size=None, max_pixels=MAX_IMAGE_PIXELS):
    """Eagerly read and decode an image file (or its bytes) to RGB.

    Args:
      path_or_bytes: a path (str or os.PathLike) or the encoded bytes.
      target_size, max_pixels: as for :func:`decode_image`.

    Returns:
      (numpy uint8 [H', W', 3], (original_height, original_width)).

    Raises:
      FileNotFoundError: the path does not exist.
      ValueError: the image is empty, too large, corrupt or of an unknown
        format; the message names the file (or "image bytes").
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        name, data = "image bytes", bytes(path_or_bytes)
    else:
        name = os.fspath(path_or_bytes)
        with open(name, "rb") as file:
            data = file.read()
    try:
        image, size = decode_image(tf.constant(data), target_size, max_pixels, name)
    except tf.errors.InvalidArgumentError as error:
        message = _tf_message(error)
        if not message.startswith(f"{name}: "):
            message = f"{name}: {message}"
        raise ValueError(message) from error
    return image.numpy(), (int(size[0]), int(size[1]))
