"""The per-process memory of recorded visits and kept pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cobro.web.pagecache import PageCache, RecentlySeen

NOW = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)


def test_of_concurrent_first_visits_of_one_viewer_only_one_is_told_to_record_it() -> None:
    seen = RecentlySeen(timedelta(hours=1))

    first, second = seen.claim("viewer", NOW), seen.claim("viewer", NOW)
    other = seen.claim("another viewer", NOW)
    later = seen.claim("viewer", NOW + timedelta(minutes=59))
    next_hour = seen.claim("viewer", NOW + timedelta(hours=1))

    assert (first, second, other, later, next_hour) == (True, False, True, False, True)


def test_a_visit_that_was_not_recorded_is_tried_again_by_the_next_request() -> None:
    seen = RecentlySeen(timedelta(hours=1))
    assert seen.claim("viewer", NOW)

    seen.forget("viewer")  # recording it failed

    assert seen.claim("viewer", NOW + timedelta(seconds=1))


def test_a_kept_page_is_given_only_for_the_version_it_was_rendered_from() -> None:
    pages: PageCache[str] = PageCache(size=2)
    pages.put("a", (1, 2), "<p>a</p>")
    pages.put("b", (1,), "<p>b</p>")
    assert pages.get("a", (1, 2)) == "<p>a</p>"  # "a" is now the most recently used
    pages.put("c", (3,), "<p>c</p>")  # one too many: "b" goes

    assert pages.get("a", (1, 3)) is None
    assert pages.get("b", (1,)) is None
    assert pages.get("c", (3,)) == "<p>c</p>"
