"""Bad input is refused with where and what, within limits, and loses nothing accepted.

The inputs of issue 16 that used to end in a traceback, eat memory or be sent as
they were: cobro.yaml files, nested JSON, oversized CSV fields, attachments that
are not what they claim, runaway templates.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import documents
from cobro.config import parse_config
from cobro.config.checks import sample_context
from cobro.config.loader import MAX_VALUES, load_config
from cobro.engine.messages import load_attachment
from cobro.errors import ConfigError, PermanentFailure, TemplateError
from cobro.intake.events import EventError, parse_event
from cobro.intake.importer import import_file
from cobro.intake.jsontext import TooDeep, loads
from cobro.intake.readers import MAX_FIELD
from cobro.render.limits import LimitedSandbox, LimitExceeded, render_within, time_limit
from cobro.render.templates import TemplateSet
from cobro.store import tables as t
from cobro.workspace import Workspace

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STARTER = (resources.files("cobro") / "starter" / "cobro.yaml").read_text(encoding="utf-8")
COMPANY_LINE = next(i for i, s in enumerate(STARTER.splitlines(), 1) if s.startswith("company:"))

BILLION_LAUGHS = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9) if prev else ', '.join(['lol'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g", "h"], "abcdefghi", strict=True)
)


def config_problems(data: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "cobro.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return [str(p) for p in exc.value.problems]


# --------------------------------------------------------------------------- cobro.yaml

YAML_CASES = {
    "nul_character": (
        STARTER.replace("company:", "company:\x00", 1).encode(),
        f"{COMPANY_LINE}: contains U+0000 (NUL); cobro.yaml must be plain text",
    ),
    "control_character": (
        STARTER.replace("company:", "company:\x1b", 1).encode(),
        f"{COMPANY_LINE}: contains U+001B (ESC); cobro.yaml must be plain text",
    ),
    "latin1_text": (
        STARTER.replace("company:", "company:  # Compañía", 1).encode("latin-1"),
        f"{COMPANY_LINE}: is not UTF-8 text; save it as UTF-8 (e.g. not Latin-1)",
    ),
    "python_name_tag": (
        b"company: !!python/name:os.system\n",
        "1: company: the tag !!python/name:os.system is not allowed (plain data only)",
    ),
    "bad_binary_tag": (
        b"company:\n  name: !!binary '%%%'\n",
        "2: company.name: the tag !!binary is not allowed (plain data only)",
    ),
    "impossible_timestamp": (
        b"company:\n  name: !!timestamp 2026-99-99\n",
        "2: company.name: '2026-99-99' is not a valid date",
    ),
    "bad_int": (
        b"company:\n  max_catch_up_days: !!int 0xZZ\n",
        "2: company.max_catch_up_days: '0xZZ' is not a valid int",
    ),
    "list_as_key": (b"company:\n  [a, b]: 1\n", "2: company: a list cannot be used as a key"),
    "mapping_as_key": (
        b"company:\n  ? {a: 1}\n  : 2\n",
        "2: company: a mapping cannot be used as a key",
    ),
    "recursive_anchor": (
        b"segments: &loop\n  inner: *loop\n",
        "1: segments.inner: an alias refers to the value that contains it",
    ),
    "very_deep_nesting": (
        b"company: " + b"[" * 50_000 + b"]" * 50_000 + b"\n",
        "1: nested more than 32 levels deep; refused",
    ),
}


@pytest.mark.parametrize("case", YAML_CASES, ids=list(YAML_CASES))
def test_a_bad_cobro_yaml_is_refused_in_one_line_naming_where_and_what(
    case: str, tmp_path: Path
) -> None:
    data, expected = YAML_CASES[case]
    assert config_problems(data, tmp_path) == [f"{tmp_path / 'cobro.yaml'}:{expected}"]


def test_a_billion_laughs_configuration_is_refused_in_little_memory(tmp_path: Path) -> None:
    # Expanding its aliases would build a billion values: refused long before, in a few
    # megabytes (its time is not asserted: time is measured in bench/, never in a test).
    tracemalloc.start()
    try:
        [problem] = config_problems(BILLION_LAUGHS.encode(), tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"more than {MAX_VALUES} values once aliases are expanded" in problem
    assert peak < 64 * 1024 * 1024


def test_aliases_dates_and_explicit_plain_tags_are_still_read() -> None:
    text = STARTER.replace("max_catch_up_days: 30", "max_catch_up_days: !!int 30")
    text += "x-dates: {first: 2026-01-15, again: &d 2026-02-01, same: *d}\n"
    with pytest.raises(ConfigError) as exc:  # only the unknown top-level key is refused
        parse_config(text)
    assert [p.field for p in exc.value.problems] == ["x-dates"]
    assert parse_config(STARTER.replace("max_catch_up_days: 30", "max_catch_up_days: !!int 30"))


def test_a_configuration_over_the_size_limit_is_refused_without_reading_it_all(
    tmp_path: Path,
) -> None:
    [problem] = config_problems(b"# " + b"x" * (2 * 1024 * 1024) + b"\n", tmp_path)
    assert problem.endswith("is larger than 1048576 bytes; refused")


# --------------------------------------------------------------------------- JSON


def test_json_nested_beyond_the_limit_is_refused_without_recursion() -> None:
    with pytest.raises(TooDeep):
        loads("[" * 200_000 + "]" * 200_000)
    brackets_in_text = json.dumps({"a": "[{" * 40})
    assert loads(brackets_in_text) == {"a": "[{" * 40}


def test_an_event_payload_nested_too_deeply_is_refused_naming_the_field() -> None:
    data: dict[str, Any] = {"id": "e1", "subscription": "S1"}
    node = data["details"] = {}
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(EventError) as exc:
        parse_event("charge.succeeded", data)
    [problem] = exc.value.problems
    assert problem.startswith("details.x.x.") and problem.endswith(
        "nested more than 32 levels deep"
    )


def test_a_nul_in_an_event_text_is_refused_naming_the_field() -> None:
    data = {"id": "e1", "subscription": "S1", "charge": "CH\x001", "amount": "1"}
    with pytest.raises(EventError) as exc:
        parse_event("charge.succeeded", data)
    assert exc.value.problems == ["charge: contains a NUL character"]


# --------------------------------------------------------------------------- imports


def stored(ws: Workspace) -> list[str]:
    with ws.engine.connect() as conn:
        return sorted(conn.execute(select(t.customers.c.external_id)).scalars())


def test_a_deeply_nested_jsonl_line_is_refused_alone(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "customers.jsonl"
    path.write_text(
        '{"external_id": "C1", "name": "Ann"}\n'
        '{"external_id": "C2", "name": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
        '{"external_id": "C3", "name": "Bob"}\n'
        "not json\n"
        '{"external_id": "C4", "name": "Eve"}\n',
        encoding="utf-8",
    )
    report = import_file(workspace, "customers", path, NOW)
    assert [str(p) for p in report.rejected] == [
        "customers.jsonl:2: nested more than 32 levels deep",
        "customers.jsonl:4: not valid JSON: Expecting value",
    ]
    assert stored(workspace) == ["C1", "C3", "C4"]


def test_a_deeply_nested_json_record_is_refused_alone(workspace: Workspace, tmp_path: Path) -> None:
    path = tmp_path / "customers.json"
    path.write_text(
        '[{"external_id": "C1", "name": "Ann"},\n {"external_id": "C2", "name": '
        + "[" * 100_000
        + "]" * 100_000
        + '},\n {"external_id": "C3", "name": "Bob"}]',
        encoding="utf-8",
    )
    report = import_file(workspace, "customers", path, NOW)
    assert [str(p) for p in report.rejected] == [
        "customers.json:2: nested more than 32 levels deep"
    ]
    assert stored(workspace) == ["C1", "C3"]


def test_an_oversized_csv_field_refuses_its_row_alone(workspace: Workspace, tmp_path: Path) -> None:
    big = "x" * (MAX_FIELD + 1)
    path = tmp_path / "customers.csv"
    path.write_text(
        f'external_id,name\nC1,Ann\nC2,"{big}"\nC3,Bob\nC4,"two\nlines {big}\nthree"\nC5,Eve\n',
        encoding="utf-8",
    )
    report = import_file(workspace, "customers", path, NOW)
    problem = f"a field is longer than {MAX_FIELD} characters; row refused"
    assert [str(p) for p in report.rejected] == [
        f"customers.csv:3: {problem}",
        f"customers.csv:5: {problem}",
    ]
    assert stored(workspace) == ["C1", "C3", "C5"]


def test_a_json_file_read_in_chunks_keeps_records_that_straddle_them(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cobro.intake import readers

    monkeypatch.setattr(readers, "CHUNK", 7)  # every record crosses a chunk boundary
    records = [{"external_id": f"C{i}", "name": f"Name {i}"} for i in range(30)]
    path = tmp_path / "customers.json"
    path.write_text(json.dumps(records, indent=1), encoding="utf-8")
    report = import_file(workspace, "customers", path, NOW)
    assert (report.inserted, report.rejected) == (30, [])


# --------------------------------------------------------------------------- attachments


def test_an_attachment_symlinked_outside_the_workspace_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(documents.pdf())
    root = tmp_path / "ws"
    (root / "files").mkdir(parents=True)
    (root / "files" / "a.pdf").symlink_to(outside)
    with pytest.raises(PermanentFailure, match="leads outside the workspace"):
        load_attachment(root, "files/a.pdf")


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("a.pdf", b"%PDF-1.7\n<html><script>alert(1)</script></html>", "no cross-reference"),
        ("a.pdf", b"%PDF-1.4\nMZ\x90\x00" + b"\x00" * 64 + b"\nstartxref\n9\n%%EOF\n", "does not"),
        ("a.jpg", b"\xff\xd8\xff\xe0" + b"<html>" * 50, "does not decode as a JPEG"),
        ("a.docx", b"PK\x03\x04" + b"MZ" * 100, "not a valid ZIP container"),
        ("a.doc", b"\xd0\xcf\x11\xe0" + b"MZ" * 1000, "not an OLE2 compound file"),
    ],
)
def test_a_disguised_attachment_is_refused(
    tmp_path: Path, name: str, data: bytes, why: str
) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(PermanentFailure, match=why):
        load_attachment(tmp_path, name)


@pytest.mark.parametrize(
    ("name", "data"),
    [("a.pdf", documents.pdf()), ("a.jpg", documents.jpeg()), ("a.docx", documents.docx())],
)
def test_real_attachments_are_accepted(tmp_path: Path, name: str, data: bytes) -> None:
    (tmp_path / name).write_bytes(data)
    assert load_attachment(tmp_path, name).data == data


# --------------------------------------------------------------------------- templates


def template_set(tmp_path: Path, claim: str, max_seconds: float = 2.0) -> TemplateSet:
    (tmp_path / "runaway.en.j2").write_text(
        '{% extends "_layout.j2" %}{% block subject %}Hello{% endblock %}'
        "{% block claim %}" + claim + "{% endblock %}",
        encoding="utf-8",
    )
    return TemplateSet(tmp_path, "en", max_seconds=max_seconds)


RUNAWAY = {
    "huge_string": '{{ "x" * 400000000 }}',
    "huge_padding": '{{ "x"|center(400000000) }}',
    "huge_format": '{{ "{:>400000000}".format(1) }}',
    "doubling_loop": (
        '{% set ns = namespace(s="xx") %}{% for i in range(100) %}'
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}"
    ),
    "replace_bomb": '{% set s = "x" * 100000 %}{{ s|replace("x", s) }}',
    "join_bomb": '{{ range(100000)|join("x" * 100000) }}',
    "lipsum_bomb": "{{ lipsum(100000) }}",
}


@pytest.mark.parametrize("case", RUNAWAY, ids=list(RUNAWAY))
def test_a_template_building_a_huge_value_is_stopped_before_it_does(
    case: str, tmp_path: Path
) -> None:
    templates = template_set(tmp_path, RUNAWAY[case])
    config = parse_config(STARTER)
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError, match=r"^template runaway\.en\.j2: "):
            templates.render("runaway", "en", sample_context(config, "en"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024 * 1024


@pytest.mark.parametrize(
    "claim",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{{ lipsum(5) }}{% endfor %}",
    ],
    ids=["silent_nested_loops", "loop_over_lipsum"],
)
def test_a_runaway_template_is_stopped_at_its_time_limit(claim: str, tmp_path: Path) -> None:
    templates = template_set(tmp_path, claim, max_seconds=0.3)
    config = parse_config(STARTER)
    began = time.monotonic()
    with pytest.raises(TemplateError, match=r"^template runaway\.en\.j2: took longer than 0\.3 s"):
        templates.render("runaway", "en", sample_context(config, "en"))
    assert time.monotonic() - began < 3


class Ticking:
    """A clock that moves ``step`` seconds on each reading."""

    def __init__(self, step: float) -> None:
        self.now = 0.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_render_that_waits_on_a_loaded_machine_is_not_stopped_by_the_clock() -> None:
    # A second passes on the clock between any two checks (the process waits for the
    # processor), while the render itself takes a few milliseconds of it: it is finished.
    template = LimitedSandbox().from_string("{% for i in range(50) %}{{ item.name }} {% endfor %}")
    clock = Ticking(1.0)
    with time_limit(0.5, clock=clock):
        out = render_within(template, {"item": {"name": "x"}})
    assert out.split() == ["x"] * 50
    assert clock.now > 50  # the clock passed the limit a hundred times over


def test_a_runaway_template_is_stopped_once_it_has_used_its_processor_time() -> None:
    template = LimitedSandbox().from_string(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    cpu = Ticking(0.01)  # 10 ms of processor time between two readings
    with (
        time_limit(0.3, clock=Ticking(1.0), cpu_clock=cpu),
        pytest.raises(LimitExceeded, match=r"^took longer than 0\.3 s to render"),
    ):
        render_within(template, {})
    assert 0.3 <= cpu.now < 0.35  # stopped at the first reading past the limit


def test_ordinary_template_features_still_work_within_the_limits(tmp_path: Path) -> None:
    templates = template_set(
        tmp_path,
        '{{ "ab" * 2 }} {{ range(3)|join(",") }} {{ "x"|center(5) }}|{{ "%05d"|format(42) }} '
        '{{ "{:>4}".format(7) }} {{ "a-b"|replace("-", "+") }} {{ ["p", "q"]|join }}',
    )
    rendered = templates.render("runaway", "en", sample_context(parse_config(STARTER), "en"))
    assert "abab 0,1,2   x  |00042    7 a+b pq" in rendered.text
