"""Where ``imagegate generate`` writes the images it downloads (``-o``), and in which format.

    no -o                  the current directory, named after the task: TASKID.png, or
                           TASKID-1.png, TASKID-2.png ... when the task made several images
    -o DIR/ or an existing directory
                           that directory (created when missing), named as above
    -o FILE                that file; with several images FILE's stem numbered: fox-1.png,
                           fox-2.png ...; a name without an extension gets the image's

The extension of a default name follows the bytes (PNG, JPEG, WebP, GIF), spelled as the
request asked (``jpg`` or ``jpeg``). ``-o fox.jpg`` without ``--format`` asks for JPEG; a
``--format`` that contradicts the extension of ``-o``, or an extension of another image format
(``-o fox.webp``), is a usage error. Files are written whole or not at all (a temporary file
renamed into place).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

FORMATS = ("png", "jpeg", "jpg")
_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpeg"}
# Image formats the service does not write: a file named so would hold PNG or JPEG bytes.
_OTHER_IMAGE_SUFFIXES = frozenset({".webp", ".gif", ".heic", ".heif", ".avif", ".bmp", ".tif",
                                   ".tiff", ".jxl"})


class UsageError(ValueError):
    """An argument that cannot work; exit status 2 before anything is sent."""


class WriteError(Exception):
    """An image that could not be written (a full disk, a directory without permission)."""


def choose_format(fmt: str | None, output: str | None) -> str:
    """The ``output_format`` to ask for: ``--format``, else the extension of ``-o``, else png.
    Raises UsageError when the two disagree."""
    implied = None
    if output and not is_directory_target(output):
        suffix = Path(output).suffix.lower()
        if suffix in _OTHER_IMAGE_SUFFIXES:
            raise UsageError(f"-o {output}: the service makes PNG or JPEG images; name the "
                             "file .png, .jpg or .jpeg")
        implied = _SUFFIX_FORMATS.get(suffix)
    if fmt is None:
        return implied or "png"
    fmt = fmt.lower()
    if implied is not None and _kind(implied) != _kind(fmt):
        raise UsageError(f"-o {output} names a {implied} file but --format is {fmt}")
    return fmt


def is_directory_target(output: str) -> bool:
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def check_target(output: str | None) -> None:
    """Refuse, before the task is submitted (and paid for), an ``-o`` that cannot be written:
    a directory path whose nearest existing ancestor is a file or not writable."""
    if output is None:
        return
    path = Path(output)
    parent = path if is_directory_target(output) else path.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"-o {output}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"-o {output}: {existing} is not writable")


def sniff_extension(data: bytes, requested: str) -> str:
    """The file extension for image bytes: by their signature, ``.jpg`` or ``.jpeg`` as
    ``requested`` spells JPEG; the requested format's when the bytes are none we know."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg" if requested == "jpg" else ".jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    return "." + requested


def output_paths(output: str | None, task_id: str, extensions: list[str],
                 cwd: Path | None = None) -> list[Path]:
    """One path per image (``extensions[i]`` is image i's), by the rules of this module;
    without ``-o``, relative to ``cwd`` (default: relative paths, in the current directory)."""
    count = len(extensions)
    if output is None or is_directory_target(output):
        folder = Path(output) if output is not None else (cwd or Path())
        if count == 1:
            return [folder / f"{task_id}{extensions[0]}"]
        return [folder / f"{task_id}-{i}{ext}" for i, ext in enumerate(extensions, 1)]
    path = Path(output)
    suffix = path.suffix
    if count == 1:
        return [path if suffix else path.with_name(path.name + extensions[0])]
    stem = path.name[: -len(suffix)] if suffix else path.name
    return [path.with_name(f"{stem}-{i}{suffix or ext}")
            for i, ext in enumerate(extensions, 1)]


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole (creating its directory), replacing any file there;
    raises WriteError when the system refuses."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as exc:
        raise WriteError(f"cannot write the image {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would outlive the rename
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise WriteError(f"cannot write the image {path}: {exc.strerror or exc}") from exc
        raise
    return path


def _kind(fmt: str) -> str:
    return "jpeg" if fmt in ("jpg", "jpeg") else fmt


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
