"""The portal's forms read and checked: a dispute (one item, a reason, an optional file) and
a promise to pay (items and a date). Problems are sentences in the debtor's language."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import PurePosixPath, PureWindowsPath

from starlette.datastructures import FormData

from cobro.engine.responses import Attachment
from cobro.render.filetypes import jpeg_problem, pdf_problem, png_problem

MAX_REASON = 2000
MAX_NOTE = 2000

#: What an attachment may be, told by its first bytes: (content type, suffix, check).
_TYPES = (
    (b"%PDF-", "application/pdf", ".pdf", pdf_problem),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png", png_problem),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg", jpeg_problem),
)


@dataclass
class Upload:
    """A file the browser sent: its name as given, and at most ``limit + 1`` of its bytes."""

    filename: str
    data: bytes


@dataclass
class DisputeForm:
    item: int | None = None
    reason: str = ""
    attachment: Attachment | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class PromiseForm:
    items: list[int] = field(default_factory=list)
    promised_on: date | None = None
    note: str | None = None
    text_date: str = ""
    problems: list[str] = field(default_factory=list)


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _ids(values: list[str]) -> list[int] | None:
    """The item ids chosen, or None when one is not an id."""
    try:
        return [int(v) for v in values]
    except ValueError:
        return None


def attachment_problem(data: bytes) -> tuple[str, str] | str:
    """(content type, suffix) of a PDF, PNG or JPEG file, told by its content; else why not."""
    for magic, content_type, suffix, check in _TYPES:
        if data.startswith(magic):
            problem = check(data)
            return problem if problem else (content_type, suffix)
    return "it is not a PDF, PNG or JPEG file"


def _attachment_name(given: str, suffix: str) -> str:
    """The file's own name without any folder, given the suffix its content has."""
    name = PureWindowsPath(PurePosixPath(given).name).name.strip() or "attachment"
    stem = PurePosixPath(name).stem[:150] or "attachment"
    return f"{stem}{suffix}"


def read_dispute(
    form: FormData,
    upload: Upload | None,
    allowed: set[int],
    max_kb: int,
    words: dict[str, str],
) -> DisputeForm:
    """The dispute asked for, with a problem for each field that is not right."""
    out = DisputeForm(reason=_text(form, "reason").strip()[:MAX_REASON])
    ids = _ids([_text(form, "item")])
    if ids is None or ids[0] not in allowed:
        out.problems.append(words["err_item"])
    else:
        out.item = ids[0]
    if not out.reason:
        out.problems.append(words["err_reason"])
    if upload is not None and upload.data:
        if len(upload.data) > max_kb * 1024:
            out.problems.append(words["err_big"].format(kb=max_kb))
        else:
            found = attachment_problem(upload.data)
            if isinstance(found, str):
                out.problems.append(words["err_type"].format(why=found))
            else:
                content_type, suffix = found
                out.attachment = Attachment(
                    _attachment_name(upload.filename, suffix), content_type, upload.data
                )
    return out


def read_promise(
    form: FormData,
    allowed: set[int],
    today: date,
    max_days: int,
    words: dict[str, str],
) -> PromiseForm:
    """The promise asked for, with a problem for each field that is not right."""
    out = PromiseForm(text_date=_text(form, "promised_on").strip()[:20])
    note = _text(form, "note").strip()[:MAX_NOTE]
    out.note = note or None
    chosen = [v for v in form.getlist("item") if isinstance(v, str)]
    ids = _ids(chosen)
    if not chosen or ids is None or not set(ids) <= allowed:
        out.problems.append(words["err_items"] if not chosen else words["err_item"])
    else:
        out.items = sorted(set(ids))
    try:
        on = date.fromisoformat(out.text_date)
    except ValueError:
        out.problems.append(words["err_date"])
        return out
    if on < today:
        out.problems.append(words["err_past"])
    elif on > today + timedelta(days=max_days):
        out.problems.append(words["err_far"].format(days=max_days))
    else:
        out.promised_on = on
    return out
