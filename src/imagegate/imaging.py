"""Image decoding, normalising and encoding. Pure CPU work: callers run the heavy calls off the
event loop (``asyncio.to_thread``)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from imagegate.contract import CONTENT_TYPES
from imagegate.picture_headers import EncodedPicture

# Decoders we accept for reference images (docs/contract.md §10). HEIC joins when pillow-heif
# is there.
ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP", "GIF", "MPO"})
try:  # pragma: no cover - depends on an optional package
    import pillow_heif  # type: ignore[import-not-found, unused-ignore]

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
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image has more pixels than the limit of {max_pixels}") from exc
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


# zlib level for PNG output. Measured on the 2-core dev box (Pillow 13), 12288x1536 / 4096x4096 RGB:
# a noisy photo-like picture took 1.4 / 1.2 s at level 1, 1.6 / 1.4 s at 2, 2.8 / 2.4 s at 3 and
# 6.4 / 6.0 s at 6, the files shrinking by under 1 %; a smooth picture 0.65 / 0.55 s at level 1;
# the sandbox picture about 0.3 s. Z_RLE saved 20 % time on noise but grew smooth files by 40 %.
PNG_COMPRESS_LEVEL = 1
_JPEG_FORMATS = frozenset({"jpeg", "jpg"})
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class EncodedImage:
    """One delivered picture: its bytes and what a response says about them."""

    data: bytes
    content_type: str  # "image/png" or "image/jpeg"
    extension: str  # "png", "jpeg" or "jpg": follows the value asked for
    width: int
    height: int
    adjusted: bool  # True when the source was cropped and/or resized to reach the size


def fit_to_size(image: Image.Image, width: int, height: int) -> tuple[Image.Image, bool]:
    """Center-crop ``image`` to the aspect ratio of ``width`` x ``height``, then resize it
    (LANCZOS) to exactly that size. Returns ``(image, adjusted)``; an image already that size
    comes back unchanged with ``adjusted`` False. Raises ``ValueError`` for a size below 1x1.
    """
    if width < 1 or height < 1:
        raise ValueError(f"target size {width}x{height} has no pixels")
    if image.size == (width, height):
        return image, False
    src_w, src_h = image.size
    if src_w * height > width * src_h:  # source is wider: trim left and right
        crop = src_h * width / height
        box = ((src_w - crop) / 2, 0.0, (src_w + crop) / 2, float(src_h))
    else:  # source is taller (or equal ratio): trim top and bottom
        crop = src_w * height / width
        box = (0.0, (src_h - crop) / 2, float(src_w), (src_h + crop) / 2)
    # reducing_gap=3 first shrinks by whole factors on big downscales; Pillow documents the
    # result as indistinguishable from a plain LANCZOS pass, at a fraction of the cost.
    source = _rgb_or_rgba(image)
    fitted = source.resize((width, height), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    return fitted, True


def encode(image: Image.Image, output_format: str, *, jpeg_quality: int = 92) -> bytes:
    """Encode ``image`` as ``png``, ``jpeg`` or ``jpg`` (any case). JPEG output is RGB with any
    transparency flattened onto white. Raises ``ValueError`` for another format."""
    fmt = output_format.lower()
    buf = io.BytesIO()
    if fmt == "png":
        _rgb_or_rgba(image).save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    elif fmt in _JPEG_FORMATS:
        flatten_alpha(image).save(buf, "JPEG", quality=jpeg_quality)
    else:
        raise ValueError(f"unsupported output format {output_format!r}")
    return buf.getvalue()


def normalise(image: Image.Image, width: int, height: int, output_format: str) -> EncodedImage:
    """Deliver ``image`` at exactly ``width`` x ``height`` in ``output_format``
    (docs/contract.md §6).

    CPU-heavy on large pictures: call it through ``asyncio.to_thread``. Raises ``ValueError``
    for an unsupported format or an empty size.
    """
    extension = output_format.lower()
    if extension not in CONTENT_TYPES:
        raise ValueError(f"unsupported output format {output_format!r}")
    fitted, adjusted = fit_to_size(image, width, height)
    return EncodedImage(data=encode(fitted, extension), content_type=CONTENT_TYPES[extension],
                        extension=extension, width=width, height=height, adjusted=adjusted)


def as_delivered(picture: EncodedPicture, width: int, height: int,
                 output_format: str) -> EncodedImage | None:
    """``picture``'s own bytes as the delivered file, when it already is exactly ``width`` x
    ``height`` in ``output_format`` (its structure checked by ``picture_headers.probe``);
    None when it must be decoded and ``normalise``d instead. Cheap: no pixel is touched."""
    extension = output_format.lower()
    wanted = "JPEG" if extension in _JPEG_FORMATS else extension.upper()
    if picture.format != wanted or picture.size != (width, height):
        return None
    return EncodedImage(data=picture.data, content_type=CONTENT_TYPES[extension],
                        extension=extension, width=width, height=height, adjusted=False)


def flatten_alpha(image: Image.Image, background: tuple[int, int, int] = _WHITE) -> Image.Image:
    """An RGB copy of ``image`` with any transparency composited onto ``background``."""
    if not _has_alpha(image):
        return image if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, background)
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _rgb_or_rgba(image: Image.Image) -> Image.Image:
    """``image`` in RGB or RGBA, so resampling and PNG saving behave the same for every mode."""
    if image.mode in ("RGB", "RGBA"):
        return image
    return image.convert("RGBA" if _has_alpha(image) else "RGB")
