"""Local images as ``data:`` URIs, and media types told by content."""

from __future__ import annotations

import base64
from pathlib import Path

__all__ = ["image_data_uri", "sniff_media_type"]

_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
               (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))


def sniff_media_type(data: bytes) -> str | None:
    """The image media type of ``data`` by its first bytes (PNG, JPEG, GIF, WebP, HEIC), or None.
    """
    for magic, media in _SIGNATURES:
        if data.startswith(magic):
            return media
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"heif"):
        return "image/heic"
    return None


def image_data_uri(path: str | Path) -> str:
    """The file at ``path`` as a ``data:image/...;base64,`` URI, for ``images=`` of a submit.
    The media type is read from the content, not the name; raises ValueError for a file that
    is not a PNG, JPEG, GIF, WebP or HEIC image."""
    data = Path(path).read_bytes()
    media = sniff_media_type(data)
    if media is None:
        raise ValueError(f"{path} is not a PNG, JPEG, GIF, WebP or HEIC image")
    return f"data:{media};base64,{base64.b64encode(data).decode()}"
