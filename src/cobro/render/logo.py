"""The company logo: an image file in the workspace, embedded in emails and PDFs.

``branding.logo_file`` names a PNG, JPEG or GIF inside the workspace. Emails carry it as
an inline part of a ``multipart/related`` message (``<img src="cid:logo@cobro">``) and
PDFs as a ``data:`` URI, so no one fetches it from anywhere: not Cobro, not the reader's
mail client. ``branding.logo_url`` remains for a logo hosted elsewhere (emails only).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cobro.channels.base import InlineImage
from cobro.config.schema import check_logo_path
from cobro.errors import WorkspaceError

#: Suffix -> (content type, the first bytes a file of that type starts with).
LOGO_TYPES: dict[str, tuple[str, tuple[bytes, ...]]] = {
    ".png": ("image/png", (b"\x89PNG\r\n\x1a\n",)),
    ".jpg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".jpeg": ("image/jpeg", (b"\xff\xd8\xff",)),
    ".gif": ("image/gif", (b"GIF87a", b"GIF89a")),
}
MAX_LOGO_BYTES = 1_000_000  # it travels in every email
LOGO_CID = "logo@cobro"


@dataclass(frozen=True)
class Logo:
    filename: str
    content_type: str
    data: bytes

    @property
    def src_email(self) -> str:
        """Where an email's HTML finds the logo: its inline part."""
        return f"cid:{LOGO_CID}"

    @property
    def src_pdf(self) -> str:
        """Where a PDF's HTML finds the logo: the image itself, as a ``data:`` URI."""
        return f"data:{self.content_type};base64,{base64.b64encode(self.data).decode('ascii')}"

    def inline(self) -> InlineImage:
        return InlineImage(LOGO_CID, self.filename, self.content_type, self.data)


def load_logo(root: Path, relative: str) -> Logo:
    """Read the logo ``relative`` to the workspace ``root``, checking that it is an image
    of its type, inside the workspace and not too large (``WorkspaceError`` if not)."""
    try:
        check_logo_path(relative)
    except ValueError as exc:
        raise WorkspaceError(f"logo {relative!r}: {exc}") from None
    path = root / relative
    try:
        if not path.resolve().is_relative_to(root.resolve()):
            raise WorkspaceError(f"logo {relative!r} leads outside the workspace")
        size = path.stat().st_size
        if size > MAX_LOGO_BYTES:
            raise WorkspaceError(
                f"logo {relative!r} is {size} bytes; the limit is {MAX_LOGO_BYTES}"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise WorkspaceError(f"logo {relative!r} cannot be read: {exc.strerror}") from exc
    content_type, magic = LOGO_TYPES[PurePosixPath(relative).suffix.lower()]
    if not data.startswith(magic):
        raise WorkspaceError(
            f"logo {relative!r} is not an image of its type ({content_type.split('/')[1]})"
        )
    return Logo(PurePosixPath(relative).name, content_type, data)


def workspace_logo(root: Path | None, relative: str | None) -> Logo | None:
    """The logo to embed, or None when there is none or it cannot be used (messages then
    show the company name; ``cobro check`` says what is wrong with the file)."""
    if root is None or not relative:
        return None
    try:
        return load_logo(root, relative)
    except WorkspaceError:
        return None
