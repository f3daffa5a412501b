"""What a file really is: light structural checks of the attachment types Cobro sends.

A first-bytes check is not enough (HTML behind ``%PDF-`` is not a PDF), and a
full parser of every format would be a heavy dependency; these checks read the
structure each format must have:

- PDF: the ``%PDF-`` header, ``startxref`` near the end pointing at a cross-reference
  table or stream, and ``%%EOF``;
- JPEG and PNG: decoded in full by Pillow (already installed with WeasyPrint);
- ``.docx``: a ZIP container holding ``[Content_Types].xml`` that declares a Word
  document, and ``word/document.xml``;
- ``.doc``: an OLE2 compound file whose header is consistent and which holds a
  ``WordDocument`` stream.

``problem(suffix, data)`` says why ``data`` is not a file of that type, or None.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile

MAX_IMAGE_PIXELS = 50_000_000

_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")
_XREF_AT = re.compile(rb"\s*(?:xref\b|\d+\s+\d+\s+obj\b)")


def pdf_problem(data: bytes) -> str | None:
    if not re.match(rb"%PDF-[12]\.\d", data):
        return "it does not start with a PDF header"
    tail = data[-2048:]
    found = _STARTXREF.search(tail)
    if found is None:
        return "it has no cross-reference pointer and end marker (startxref, %%EOF)"
    offset = int(found.group(1))
    if offset >= len(data) or not _XREF_AT.match(data, offset):
        return "its cross-reference pointer does not point at a cross-reference section"
    return None


def jpeg_problem(data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                return f"the image is {width}×{height} pixels; the limit is {MAX_IMAGE_PIXELS}"
            image.load()
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as exc:
        return f"it does not decode as a JPEG image ({exc})"
    return None


def png_problem(data: bytes) -> str | None:
    """Why ``data`` is not a PNG image (decoded in full by Pillow), or None."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                return f"the image is {width}×{height} pixels; the limit is {MAX_IMAGE_PIXELS}"
            image.load()
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as exc:
        return f"it does not decode as a PNG image ({exc})"
    return None


def docx_problem(data: bytes) -> str | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as container:
            names = set(container.namelist())
            if "[Content_Types].xml" not in names or "word/document.xml" not in names:
                return "it is not a Word document (no [Content_Types].xml or word/document.xml)"
            types = container.getinfo("[Content_Types].xml")
            if types.file_size > 1024 * 1024:
                return "its [Content_Types].xml is implausibly large"
            if b"wordprocessingml.document" not in container.read(types):
                return "its content types do not declare a Word document"
            with container.open("word/document.xml") as document:
                head = document.read(512)
            if b"<" not in head:
                return "its word/document.xml is not XML"
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        return f"it is not a valid ZIP container ({exc})"
    return None


_OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def doc_problem(data: bytes) -> str | None:
    if len(data) < 1536 or not data.startswith(_OLE_SIGNATURE):
        return "it is not an OLE2 compound file"
    major, byte_order, sector_shift, mini_shift = struct.unpack_from("<HHHH", data, 26)
    if byte_order != 0xFFFE or (major, sector_shift) not in ((3, 9), (4, 12)) or mini_shift != 6:
        return "its compound-file header is inconsistent"
    sector = 1 << sector_shift
    first_directory = struct.unpack_from("<I", data, 48)[0]
    start = (first_directory + 1) * sector
    if start + 128 > len(data):
        return "its directory lies outside the file"
    if data[start : start + 20] != "Root Entry".encode("utf-16-le"):
        return "its directory has no root entry"
    if "WordDocument".encode("utf-16-le") not in data:
        return "it holds no WordDocument stream"
    return None


_CHECKS = {
    ".pdf": pdf_problem,
    ".jpg": jpeg_problem,
    ".jpeg": jpeg_problem,
    ".docx": docx_problem,
    ".doc": doc_problem,
}


def problem(suffix: str, data: bytes) -> str | None:
    """Why ``data`` is not really a ``suffix`` file (``.pdf``, ``.jpg``...); None if it is."""
    check = _CHECKS.get(suffix.lower())
    if check is None:
        return f"{suffix} files are not allowed"
    return check(data)
