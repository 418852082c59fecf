"""Image decoding, normalising and encoding. Pure CPU work: callers run the heavy calls off the
event loop (``asyncio.to_thread``)."""

from __future__ import annotations

import io
import warnings

from PIL import Image

# Decoders we accept for reference images (CONTRACT.md §10). HEIC joins when pillow-heif is there.
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "MPO"})
try:  # pragma: no cover - depends on an optional package
    import pillow_heif

    pillow_heif.register_heif_opener()
    ACCEPTED_FORMATS = ACCEPTED_FORMATS | {"HEIF"}
except ImportError:  # pragma: no cover
    pass


class ImageDecodeError(ValueError):
    """The bytes are not an acceptable image; the message says why, for a person."""


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode ``data`` (first frame of animations) into an RGB or RGBA image.

    The header is checked against ``max_pixels`` before any pixel is decoded, so a
    decompression bomb costs nothing. Raises ``ImageDecodeError``.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except Exception as exc:
        raise ImageDecodeError("not an image in a supported format") from exc
    if img.format not in ACCEPTED_FORMATS:
        raise ImageDecodeError(f"unsupported image format {img.format}")
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError("image has no pixels")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"image is {width}x{height} pixels, more than the limit of {max_pixels}")
    try:
        img.seek(0)
        img.load()
    except Exception as exc:
        raise ImageDecodeError("image data is corrupt or truncated") from exc
    mode = "RGBA" if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info else "RGB"
    return img.convert(mode)
