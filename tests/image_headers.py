"""Hand-written image headers that declare more pixels than ``MAX_IMAGE_PIXELS`` (2**27)
while holding almost no data: decompression bombs, which a decoder must refuse from the
header, before it allocates the pixels."""

import struct
import zlib


def png(width, height):
    """A PNG whose IHDR declares ``width``×``height`` RGB pixels (one tiny IDAT)."""

    def chunk(kind, payload):
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 4))
        + chunk(b"IEND", b"")
    )


def jpeg(width, height):
    """SOI, a baseline SOF0 frame of ``width``×``height`` (three components), the header of
    a scan (SOS: where a decoder stops reading the header) and EOI: no tables, no data."""
    components = b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 8 + len(components), 8, height, width, 3) + components
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + bytes([1, 0, 2, 0, 3, 0, 0, 63, 0])
    return b"\xff\xd8" + sof + sos + b"\xff\xd9"


def gif(width, height, frame=None):
    """A GIF89a of a ``width``×``height`` canvas holding one frame of ``frame`` (width,
    height; default the canvas) at (0, 0): a two-colour table, one LZW sub-block, trailer."""
    frame_width, frame_height = frame or (width, height)
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(6)
    image = b"\x2c" + struct.pack("<HHHHB", 0, 0, frame_width, frame_height, 0)
    return screen + image + b"\x02\x02\x4c\x01\x00" + b"\x3b"


def bmp(width, height):
    """A BITMAPINFOHEADER bitmap of ``width``×``height`` (a negative height: top-down), 24-bit,
    no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def webp_extended(width, height):
    """A RIFF/WEBP with a VP8X chunk declaring a ``width``×``height`` canvas and nothing else."""
    vp8x = (
        b"VP8X"
        + struct.pack("<I", 10)
        + bytes(4)
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


# name → (bytes, the "declares WxH pixels" its refusal names)
BOMBS = {
    "png": (png(30000, 30000), "30000x30000"),
    "jpeg": (jpeg(65000, 65000), "65000x65000"),
    "gif_canvas": (gif(65535, 65535, frame=(16, 16)), "65535x65535"),
    "gif_frame": (gif(16, 16, frame=(20000, 20000)), "20000x20000"),
    "bmp": (bmp(40000, 40000), "40000x40000"),
    "bmp_top_down": (bmp(40000, -40000), "40000x40000"),
    "webp_vp8x": (webp_extended(16384, 16384), "16384x16384"),
}
