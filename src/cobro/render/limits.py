"""Resource limits for workspace templates: how much text and time one render may take.

A template is code written by a user. Jinja's sandbox stops unsafe operations but not
expensive ones: ``"x" * 400000000``, a loop over ``lipsum`` or two nested
``range(100000)`` loops run for minutes and take hundreds of MB. ``LimitedSandbox``
refuses, before doing the work, every operation whose result would exceed
``MAX_OUTPUT`` characters (repetition, concatenation, padding, ``replace``, ``join``,
``format`` widths, ``lipsum``), and ``render_within`` renders a template as a stream,
stopping once its output passes the size limit or the time of ``time_limit`` is spent
(also checked on every ``range`` step, attribute lookup and call, so a silent loop stops
too). Exceeding a limit raises ``LimitExceeded``.

The time is the processor time of the rendering thread, not the time on the clock: a
template that loops forever uses it up as fast as the clock runs, while a render that
waits (for the processor on a loaded machine, for the interpreter lock another thread
holds) does not, and a valid template is never refused because the machine was busy. The
clock is read first, on every check, and the thread's time only once the clock has passed
the deadline: a thread cannot use more processor time than the time that has passed, so
until then the render is within its limit.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import Template
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, safe_range
from jinja2.utils import generate_lorem_ipsum

MAX_OUTPUT = 1_000_000  # characters of one rendered part, and of any value built on the way
MAX_SECONDS = 2.0  # of processor time, for one message, all its parts
MAX_LIPSUM = 20  # paragraphs


class LimitExceeded(Exception):
    """A render went past its size or time limit."""


@dataclass
class _Budget:
    """The limits of the renders inside one ``time_limit``.

    ``deadline`` is the instant on the monotonic clock before which the renders cannot
    have used ``seconds`` of processor time: it moves on (``_spent``) while they have not.
    """

    deadline: float
    seconds: float
    max_output: int
    clock: Callable[[], float]  # time.monotonic
    cpu_clock: Callable[[], float]  # time.thread_time: processor time of the calling thread
    started: float  # clock() when the budget was set
    cpu_started: float  # cpu_clock() of ``thread`` then
    thread: int  # the thread that set the budget


_BUDGET: ContextVar[_Budget | None] = ContextVar("cobro_template_budget", default=None)


def _spent(budget: _Budget) -> bool:
    """Whether the renders have used their time, asked once the clock passed the deadline.

    The time used is the processor time of the thread that set the budget; on another
    thread (a copied context) it is the time on the clock. While time is left, the
    deadline moves to the earliest instant at which it could be used up."""
    now = budget.clock()
    if threading.get_ident() == budget.thread:
        used = budget.cpu_clock() - budget.cpu_started
    else:
        used = now - budget.started
    if used >= budget.seconds:
        return True
    budget.deadline = now + (budget.seconds - used)
    return False


def _time_up(budget: _Budget) -> LimitExceeded:
    return LimitExceeded(f"took longer than {budget.seconds:g} s to render; stopped")


def _check_time() -> None:
    budget = _BUDGET.get()
    if budget is not None and budget.clock() > budget.deadline and _spent(budget):
        raise _time_up(budget)


def _check_size(size: int) -> None:
    budget = _BUDGET.get()
    limit = budget.max_output if budget is not None else MAX_OUTPUT
    if size > limit:
        raise LimitExceeded(f"would produce more than {limit} characters; stopped")


def _length(value: object) -> int:
    return len(value) if isinstance(value, str | list | tuple) else 0


class _TimedRange:
    """``range`` whose every step checks the deadline."""

    def __init__(self, *args: int) -> None:
        self._range = safe_range(*args)

    def __iter__(self) -> Iterator[int]:
        for value in self._range:
            _check_time()
            yield value

    def __len__(self) -> int:
        return len(self._range)

    def __contains__(self, value: object) -> bool:
        return value in self._range

    def __getitem__(self, index: int) -> int:
        return int(self._range[index])


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > MAX_LIPSUM or max > 1000:
        raise LimitExceeded(f"lipsum is limited to {MAX_LIPSUM} paragraphs of 1000 words")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


_WIDTH = re.compile(r"\d+")


def _format_widths(spec: object) -> None:
    """Refuse a format string asking for a field wider than the limit."""
    if isinstance(spec, str):
        for width in _WIDTH.findall(spec):
            if len(width) > 7 or int(width) > MAX_OUTPUT:
                _check_size(int(width[:8]))


def _items(value: Any) -> list[Any]:
    items = list(value)
    _check_size(len(items))
    return items


def _joined_size(items: list[Any], separator: str) -> int:
    return sum(len(str(i)) for i in items) + max(len(items) - 1, 0) * len(separator)


def _replaced_size(text: str, old: str, new: str, count: int = -1) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * (len(new) - len(old))


def _padded(value: object, width: object) -> int:
    return max(_length(value), width) if isinstance(width, int) else 0


# The size a str method's result would have, from its receiver and arguments.
_STR_METHOD_SIZE: dict[str, Any] = {
    "center": lambda s, width=0, *_: _padded(s, width),
    "ljust": lambda s, width=0, *_: _padded(s, width),
    "rjust": lambda s, width=0, *_: _padded(s, width),
    "zfill": lambda s, width=0: _padded(s, width),
    "expandtabs": lambda s, tabsize=8: len(s) * max(tabsize, 1),
    "replace": lambda s, old="", new="", count=-1: _replaced_size(s, old, new, count),
}


def _limited_concat(parts: Iterable[str]) -> str:
    joined: list[str] = []
    size = 0
    for part in parts:
        size += len(part)
        _check_size(size)
        joined.append(part)
    return "".join(joined)


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, refusing any operation that would build too large a value."""

    intercepted_binops = frozenset(["*", "**", "+"])
    concat = staticmethod(_limited_concat)  # blocks captured by {% set %} and {% filter %}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = _TimedRange
        self.globals["lipsum"] = _lipsum
        for name in ("center", "indent", "replace", "join", "format"):
            self.filters[name] = _limited_filter(name, self.filters[name])

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(times, int) and _length(seq):
                    _check_size(_length(seq) * times)
        elif operator == "+":
            _check_size(_length(left) + _length(right))
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 64:
            _check_size(int(right * abs(left).bit_length() * 0.302))  # digits of the result
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # The most frequent check of all (every attribute a template reads): inlined.
        budget = _BUDGET.get()
        if budget is not None and budget.clock() > budget.deadline and _spent(budget):
            raise _time_up(budget)
        value = super().getattr(obj, attribute)
        if isinstance(obj, str) and callable(value):
            return _limited_str_method(obj, attribute, value)
        if isinstance(value, str | list | tuple):
            limit = budget.max_output if budget is not None else MAX_OUTPUT
            if len(value) > limit:
                raise LimitExceeded(f"would produce more than {limit} characters; stopped")
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        _check_time()
        value = super().getitem(obj, argument)
        _check_size(_length(value))
        return value

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_time()
        return super().call(__context, __obj, *args, **kwargs)


def _limited_str_method(text: str, name: str, method: Any) -> Any:
    """``text.name`` (already sandboxed), checking the size of its result before it is built."""
    if name not in _STR_METHOD_SIZE and name not in ("format", "format_map", "join"):
        return method

    def limited(*args: Any, **kwargs: Any) -> Any:
        if name in _STR_METHOD_SIZE:
            _check_size(_STR_METHOD_SIZE[name](text, *args, **kwargs))
        elif name == "join" and args:
            items = _items(args[0])
            _check_size(_joined_size(items, text))
            args = (items, *args[1:])
        else:
            _format_widths(text)
        return method(*args, **kwargs)

    return limited


def _limited_filter(name: str, original: Any) -> Any:
    """``original`` with the size of its result checked before it is built."""

    def center(value: Any, width: int = 80) -> Any:
        _check_size(_padded(str(value), width))
        return original(value, width)

    def indent(s: Any, width: int | str = 4, *args: Any, **kwargs: Any) -> Any:
        text = str(s)
        pad = width if isinstance(width, int) else len(width)
        _check_size(len(text) + (text.count("\n") + 1) * pad)
        return original(s, width, *args, **kwargs)

    def replace(eval_ctx: Any, s: Any, old: str, new: str, count: int | None = None) -> Any:
        _check_size(_replaced_size(str(s), str(old), str(new), -1 if count is None else count))
        return original(eval_ctx, s, old, new, count)

    def join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        if attribute is None:
            value = _items(value)
            _check_size(_joined_size(value, str(d)))
        return original(eval_ctx, value, d, attribute)

    def format_(value: Any, *args: Any, **kwargs: Any) -> Any:
        _format_widths(value)
        return original(value, *args, **kwargs)

    limited = {
        "center": center,
        "indent": indent,
        "replace": replace,
        "join": join,
        "format": format_,
    }[name]
    for marker in ("jinja_pass_arg",):  # keep @pass_eval_context and friends
        if hasattr(original, marker):
            setattr(limited, marker, getattr(original, marker))
    return limited


@contextmanager
def time_limit(
    seconds: float = MAX_SECONDS,
    max_output: int = MAX_OUTPUT,
    clock: Callable[[], float] = time.monotonic,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> Iterator[None]:
    """Every render inside shares one budget: ``seconds`` of processor time of this thread
    (``cpu_clock``) from now; ``clock`` is the time on the clock."""
    now = clock()
    budget = _Budget(
        now + seconds,
        seconds,
        max_output,
        clock,
        cpu_clock,
        now,
        cpu_clock(),
        threading.get_ident(),
    )
    token = _BUDGET.set(budget)
    try:
        yield
    finally:
        _BUDGET.reset(token)


def render_within(template: Template, context: dict[str, Any], **extra: Any) -> str:
    """Render ``template`` as a stream, within the size limit and the current ``time_limit``
    (or one of ``MAX_SECONDS`` of its own)."""
    if _BUDGET.get() is None:
        with time_limit():
            return render_within(template, context, **extra)
    budget = _BUDGET.get()
    assert budget is not None
    limit, clock = budget.max_output, budget.clock
    parts: list[str] = []
    size = 0
    for chunk in template.generate(context, **extra):  # the checks of every chunk, inlined
        size += len(chunk)
        if size > limit:
            _check_size(size)
        if clock() > budget.deadline:
            _check_time()
        parts.append(chunk)
    return "".join(parts)


__all__ = [
    "MAX_OUTPUT",
    "MAX_SECONDS",
    "LimitExceeded",
    "LimitedSandbox",
    "render_within",
    "time_limit",
]
