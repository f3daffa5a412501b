"""Which policy applies to a debtor: explicit choice, first matching rule, or the default."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """Debtors whose attributes match every ``where`` entry get ``policy``."""

    policy: str
    where: tuple[tuple[str, str], ...]


def resolve_policy(
    rules: Iterable[Rule],
    default: str,
    *,
    explicit: str | None,
    kind: str | None,
    group: str | None,
    language: str | None,
    tags: Iterable[str],
) -> str:
    """The policy name for a debtor with these attributes."""
    if explicit:
        return explicit
    attrs = {"kind": kind, "group": group, "language": language}
    tagset = {x.strip().lower() for x in tags}
    for rule in rules:
        ok = True
        for field, value in rule.where:
            if field == "tag":
                ok = value.lower() in tagset
            elif field == "language":
                # "es" matches a debtor stored as "es" or "es_ES".
                have = (attrs.get(field) or "").lower()
                want = value.lower()
                ok = have == want or ("_" not in want and have.split("_")[0] == want)
            else:
                ok = (attrs.get(field) or "").lower() == value.lower()
            if not ok:
                break
        if ok:
            return rule.policy
    return default
