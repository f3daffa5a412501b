"""cobro.yaml rewritten in place (``cobro.config.roundtrip``): a value changed changes its
line alone, comments and order stay, entries added or removed take their lines and leave
the comments around them; what is written reads back (with PyYAML, as Cobro reads it) as
the data meant; an edit of a file changed meanwhile is refused."""

from __future__ import annotations

import copy
import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cobro.config.editing import ConcurrentEdit, changes, edit_config, read_file
from cobro.config.loader import plain_data, text_lines
from cobro.config.roundtrip import Document, guess_indent

STARTER = Path(str(resources.files("cobro") / "starter" / "cobro.yaml")).read_text(encoding="utf-8")


def rewritten(text: str, edit: Any) -> str:
    data = plain_data(text)
    edit(data)
    document = Document(text)
    document.sync(data)
    out = document.text()
    assert plain_data(out) == data
    return out


def diff(before: str, after: str) -> list[str]:
    """The lines removed (``-``) and added (``+``), in order. Lines that come often (every
    phase's ``names:``) are matched like any other: difflib's own diff treats them as
    junk and may show one removed and added again in place."""
    a, b = before.splitlines(), after.splitlines()
    found: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            found += ["-" + line for line in a[i1:i2]] + ["+" + line for line in b[j1:j2]]
    return found


def leaves(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(data, dict):
        return [leaf for k, v in data.items() for leaf in leaves(v, (*path, k))]
    if isinstance(data, list) and any(isinstance(v, dict | list) for v in data):
        return [leaf for i, v in enumerate(data) for leaf in leaves(v, (*path, i))]
    return [(path, data)]


def put(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        data = data[part]
    data[path[-1]] = value


def other(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 7
    if isinstance(value, float):
        return value * 2
    if isinstance(value, list):
        return [*value, "push"]
    return f"{value} changed" if "\n" not in value else value + "More.\n"


def test_the_starter_is_written_back_unchanged_when_nothing_changes() -> None:
    assert Document(STARTER).text() == STARTER
    assert guess_indent(STARTER) == (2, 4, 2)


SCALARS = [(p, v) for p, v in leaves(plain_data(STARTER)) if not (isinstance(v, str) and "\n" in v)]


@pytest.mark.parametrize(
    ("path", "value"), SCALARS, ids=[".".join(map(str, p)) for p, _ in SCALARS]
)
def test_changing_any_value_changes_its_own_line_and_keeps_its_comment(
    path: tuple[Any, ...], value: Any
) -> None:
    after = rewritten(STARTER, lambda d: put(d, path, other(value)))
    removed = [line for line in diff(STARTER, after) if line.startswith("-")]
    added = [line for line in diff(STARTER, after) if line.startswith("+")]
    line = STARTER.splitlines()[text_lines(STARTER)[path] - 1]
    assert removed == ["-" + line]
    assert len(added) == 1
    if "#" in line and not isinstance(value, str):
        assert added[0].endswith(line[line.index("#") :])  # the comment stays


def test_a_key_added_goes_last_in_its_mapping_and_the_section_comment_stays_below() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["segments"]["vip"] = {"kind": "person", "tags": ["vip"]}

    after = rewritten(STARTER, edit)
    assert diff(STARTER, after) == ["+  vip:", "+    kind: person", "+    tags: [vip]"]
    lines = after.splitlines()
    assert lines[lines.index("  vip:") + 4].startswith("# Scheduled actions run")


def test_an_entry_removed_takes_its_lines_only() -> None:
    def edit(d: dict[str, Any]) -> None:
        del d["segments"]["card_holders"]  # the last segment: the comment below it stays
        d["actions"] = [a for a in d["actions"] if a["key"] != "call-large-debtors"]
        del d["company"]["reply_to"]

    after = rewritten(STARTER, edit)
    assert [line for line in diff(STARTER, after) if line.startswith("+")] == []
    removed = [line[1:] for line in diff(STARTER, after)]
    assert removed == [
        "  reply_to: administracion@demo.example",
        "  card_holders:",
        "    description: Card holders",
        "    kind: person",
        "  - key: call-large-debtors",
        "    description: Call businesses with large overdue debt",
        "    type: task",
        "    days: [5]",
        "    segment: large_b2b_debt",
        "    message: Call the customer about the overdue debt and agree a payment date",
        "    due_after_days: 2",
        '    due_time: "13:00"',
    ]
    assert "# Scheduled actions run as part of `cobro run`" in after


def test_an_action_appended_after_a_block_of_text_keeps_the_comments_after_it() -> None:
    new = {"key": "n", "description": "N", "type": "task", "days": [1], "segment": "x"}
    after = rewritten(STARTER, lambda d: d["actions"].append({**new, "message": "Call"}))
    added = [line[1:] for line in diff(STARTER, after) if line.startswith("+")]
    assert added == [
        "  - key: n",
        "    description: N",
        "    type: task",
        "    days: [1]",
        "    segment: x",
        "    message: Call",
    ]
    assert "\n# Subscription notices (plans and passes)" in after
    assert "# attachment: files/condiciones.pdf" in after


@pytest.mark.parametrize(
    "text",
    ["09:00", "10:30", "yes", "no", "on", "off", "null", "~", "1e3", "0x1F", "012", "", " pad"],
)
def test_text_that_pyyaml_would_read_as_something_else_is_quoted(text: str) -> None:
    after = rewritten(STARTER, lambda d: d["company"].__setitem__("name", text))
    assert plain_data(after)["company"]["name"] == text


def test_a_flow_mapping_and_a_flow_list_keep_their_style() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["segments"]["overdue_30"]["days_overdue"]["max"] = 90
        d["policies"]["b2b"]["phases"][1]["recipients"] = ["debtor"]

    after = rewritten(STARTER, edit)
    assert diff(STARTER, after) == [
        "-        recipients: [debtor, sales_rep]",
        "+        recipients: [debtor]",
        "-    days_overdue: {min: 30}",
        "+    days_overdue: {min: 30, max: 90}",
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([p for p, _ in SCALARS]), min_size=1, max_size=6, unique=True),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=30),
)
def test_any_values_written_read_back_as_meant_and_nothing_else_moves(
    paths: list[tuple[Any, ...]], value: str
) -> None:
    data = plain_data(STARTER)
    wanted = copy.deepcopy(data)
    for path in paths:
        put(wanted, path, value)
    document = Document(STARTER)
    document.sync(wanted)
    after = document.text()
    assert plain_data(after) == wanted
    changed = {line for line in diff(STARTER, after) if line.startswith("-")}
    assert len(changed) <= len(paths)


def test_changes_name_each_value_by_its_path() -> None:
    before = plain_data(STARTER)
    after = copy.deepcopy(before)
    after["actions"][0]["days"] = [20]
    after["subscriptions"]["admin"]["expired"] = False
    del after["segments"]["card_holders"]
    assert [(c.path, c.old, c.new) for c in changes(before, after)] == [
        ("segments.card_holders", {"description": "Card holders", "kind": "person"}, None),
        ("actions[statement].days", [20, "last"], [20]),
        ("subscriptions.admin.expired", True, False),
    ]


def test_an_edit_of_a_file_changed_meanwhile_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cobro.yaml").write_text(STARTER, encoding="utf-8")
    seen = read_file(tmp_path)
    (tmp_path / "cobro.yaml").write_text(STARTER + "# edited by hand\n", encoding="utf-8")
    with pytest.raises(ConcurrentEdit, match="was changed since this page was opened"):
        edit_config(tmp_path, seen.digest, lambda d: d["banking"].update(enabled=False))
    assert (tmp_path / "cobro.yaml").read_text(encoding="utf-8").endswith("# edited by hand\n")
    saved = edit_config(
        tmp_path, read_file(tmp_path).digest, lambda d: d["banking"].update(enabled=False)
    )
    assert [(c.path, c.old, c.new) for c in saved.changes] == [("banking.enabled", True, False)]
    assert saved.config.banking.enabled is False
    assert list(tmp_path.iterdir()) == [tmp_path / "cobro.yaml"]  # no temporary file left


def test_the_dashboard_says_everything_in_both_languages() -> None:
    from cobro.web.dashboard.labels import DASHBOARD_LABELS

    assert set(DASHBOARD_LABELS["es"]) == set(DASHBOARD_LABELS["en"])
