"""Pages kept once rendered, while what they show has not changed.

An entry is a page's HTML and the *version* of the data it was rendered from (a small
tuple a single indexed query reads, e.g. counts, sums and latest ids of a debtor's rows).
A request reads the version (cheap), and renders again only when it differs: a page is
never stale, in this process or another, and costs a render only when its data changed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

V = TypeVar("V")


class PageCache(Generic[V]):
    """At most ``size`` rendered pages (or other values kept by version), least recently
    used first out (thread-safe)."""

    def __init__(self, size: int = 2048) -> None:
        self.size = size
        self._pages: OrderedDict[Hashable, tuple[Hashable, V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, version: Hashable) -> V | None:
        with self._lock:
            found = self._pages.get(key)
            if found is None or found[0] != version:
                return None
            self._pages.move_to_end(key)
            return found[1]

    def latest(self, key: Hashable) -> V | None:
        """What is kept for ``key``, whatever version it was kept for."""
        with self._lock:
            found = self._pages.get(key)
            return None if found is None else found[1]

    def clear(self) -> None:
        """Forget every page (what they were rendered with, the configuration, changed)."""
        with self._lock:
            self._pages.clear()

    def put(self, key: Hashable, version: Hashable, html: V) -> None:
        with self._lock:
            self._pages[key] = (version, html)
            self._pages.move_to_end(key)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)


class RecentlySeen:
    """When this process last knew a key (a claim, an address, a browser) was recorded,
    so that a page opened again within ``window`` needs no query to know it was."""

    def __init__(self, window: timedelta, size: int = 65536) -> None:
        self.window, self.size = window, size
        self._seen: OrderedDict[Hashable, datetime] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, key: Hashable, now: datetime) -> bool:
        """True, and ``key`` marked as seen ``now``, when it was not seen recently: of
        concurrent requests for one key only the first is told to record it."""
        with self._lock:
            at = self._seen.get(key)
            if at is not None and at <= now < at + self.window:
                return False
            self._mark(key, now)
            return True

    def forget(self, key: Hashable) -> None:
        with self._lock:
            self._seen.pop(key, None)

    def mark(self, key: Hashable, at: datetime) -> None:
        with self._lock:
            self._mark(key, at)

    def _mark(self, key: Hashable, at: datetime) -> None:
        self._seen[key] = at
        self._seen.move_to_end(key)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
