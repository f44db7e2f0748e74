"""Which format a file holds, from its first bytes, and the pixel limit every reader applies.

Archives hold files whose suffix lies (a DICOM saved as .png, a PNG renamed .dcm, a TIFF as
.png), so readers go by content and use the suffix only when the content names no format. The
pixel limit is Pillow's decompression-bomb limit (twice `PIL.Image.MAX_IMAGE_PIXELS`, 179
megapixels by default; None disables it), applied to the size a header declares before
anything is decoded, so a corrupt or hostile header fails at once instead of allocating
gigabytes or decoding for minutes.
"""

from __future__ import annotations

from pathlib import Path

from medattn.errors import ImageReadError

MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
         (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"), (b"BM", "bmp"))


def sniff(path: Path) -> str | None:
    """'dicom', 'png', 'jpeg', 'tiff', 'bmp' or 'webp' from the file's first bytes; None when they name
    none of these. DICOM: the DICM preamble, or a first element of group 0002 or 0008 in
    little-endian order (files written without preamble and File Meta)."""
    with open(path, "rb") as handle:
        head = handle.read(132)
    if len(head) == 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if len(head) >= 8 and head[1] == 0 and head[0] in (0x02, 0x08) and head[3] == 0:
        return "dicom"
    return None


def check_pixels(path: Path, width: int, height: int) -> None:
    """ImageReadError naming the file when a frame's declared size exceeds the pixel limit."""
    from PIL import Image

    limit = None if Image.MAX_IMAGE_PIXELS is None else 2 * int(Image.MAX_IMAGE_PIXELS)
    pixels = int(width) * int(height)
    if limit is not None and pixels > limit:
        raise ImageReadError(path, f"the header declares {int(width)}x{int(height)} = {pixels:,} pixels, more than "
                                   f"the limit of {limit:,}{ADVICE}")


def bomb_error(path: Path, exc: Exception) -> ImageReadError:
    """Pillow's DecompressionBombError (same limit) as an ImageReadError naming the file."""
    return ImageReadError(path, f"{exc}{ADVICE}")


ADVICE = " (a corrupt header or a decompression bomb); if the image is genuine, raise PIL.Image.MAX_IMAGE_PIXELS"
