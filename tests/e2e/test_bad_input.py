"""The inputs of issue 16, through the command line: one line naming where and what, exit 2
(or 1 for refused rows, whose neighbours are imported), never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .cli import copy_workspace, run_cobro

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_bad_input.py")

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-input") / "acme"
    subprocess.run(
        [sys.executable, "-m", "cobro", "init", str(root)], check=True, capture_output=True
    )
    return root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Path:
    return copy_workspace(built, tmp_path / "acme")


def company_line(text: str) -> int:
    return next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("company:"))


def break_config(text: str, case: str) -> tuple[bytes, str]:
    """The starter cobro.yaml broken as the issue found it, and the problem expected."""
    at = company_line(text)
    body = text.split("company:", 1)[1]
    cases = {
        "nul": (text.replace("company:", "company:\x00", 1).encode(), f"{at}: contains U+0000"),
        "control": (text.replace("company:", "company:\x07", 1).encode(), f"{at}: contains U+0007"),
        "latin1": (
            text.replace("company:", "company:  # Compañía", 1).encode("latin-1"),
            f"{at}: is not UTF-8 text",
        ),
        "python_tag": (
            text.replace("company:", "company: !!python/name:os.system\nx:", 1).encode(),
            f"{at}: company: the tag !!python/name:os.system is not allowed",
        ),
        "binary_tag": (
            text.replace("company:", "company: !!binary '%%%'\nx:", 1).encode(),
            f"{at}: company: the tag !!binary is not allowed",
        ),
        "timestamp_tag": (
            text.replace("company:", "company: !!timestamp 2026-99-99\nx:", 1).encode(),
            f"{at}: company: '2026-99-99' is not a valid date",
        ),
        "int_tag": (
            text.replace("company:", "company: !!int 0xZZ\nx:", 1).encode(),
            f"{at}: company: '0xZZ' is not a valid int",
        ),
        "list_key": (
            text.replace("company:", "[company, x]:", 1).encode(),
            f"{at}: a list cannot be used as a key",
        ),
        "mapping_key": (
            text.replace("company:", "? {company: x}\n:", 1).encode(),
            f"{at}: a mapping cannot be used as a key",
        ),
        "recursive_anchor": (
            text.replace("company:", "loop: &loop\n  again: *loop\ncompany:", 1).encode(),
            f"{at}: loop.again: an alias refers to the value that contains it",
        ),
        "deep_nesting": (
            ("company: " + DEEP + "\nx:" + body).encode(),
            "1: nested more than 32 levels deep",
        ),
    }
    return cases[case]


CONFIG_CASES = [
    "nul",
    "control",
    "latin1",
    "python_tag",
    "binary_tag",
    "timestamp_tag",
    "int_tag",
    "list_key",
    "mapping_key",
    "recursive_anchor",
    "deep_nesting",
]


# Every case through `cobro check`; `cobro run` reads the file the same way (three cases).
COMMANDS = [(case, "check") for case in CONFIG_CASES] + [
    (case, "run") for case in ("nul", "python_tag", "deep_nesting")
]


@pytest.mark.parametrize(("case", "command"), COMMANDS)
def test_issue16_a_broken_cobro_yaml_gets_one_line_and_exit_2(
    ws: Path, case: str, command: str
) -> None:
    cfg = ws / "cobro.yaml"
    data, expected = break_config(cfg.read_text(encoding="utf-8"), case)
    cfg.write_bytes(data)
    args = ["--date", "2026-03-01"] if command == "run" else []
    proc = run_cobro(ws, command, *args, ok=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    [problem] = [s for s in proc.stderr.splitlines() if re.match(r".*cobro\.yaml:\d+: ", s)]
    assert problem.startswith(f"{cfg}:{expected}"), problem


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_issue16_a_deeply_nested_import_record_is_refused_alone(ws: Path, suffix: str) -> None:
    good = [json.dumps({"external_id": f"C{i}", "name": f"Customer {i}"}) for i in (1, 3)]
    deep = '{"external_id": "C2", "name": ' + DEEP + "}"
    if suffix == ".json":
        text = "[" + ",\n".join([good[0], deep, good[1]]) + "]"
    else:
        text = "\n".join([good[0], deep, good[1]]) + "\n"
    (ws / f"customers{suffix}").write_text(text, encoding="utf-8")
    proc = run_cobro(ws, "import", "customers", f"customers{suffix}", "--json", ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert (report["inserted"], report["rejected"]) == (
        2,
        [{"line": 2, "field": "", "problem": "nested more than 32 levels deep"}],
    )


def test_issue16_a_deeply_nested_event_payload_is_refused_with_exit_2(ws: Path) -> None:
    payload = '{"id": "e1", "subscription": "S1", "details": ' + DEEP + "}"
    proc = run_cobro(
        ws, "event", "post", "charge.succeeded", "--data", "-", stdin=payload, ok=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--data: nested more than 32 levels deep" in proc.stderr


def test_issue16_a_nul_in_an_event_text_is_refused_with_exit_2(ws: Path) -> None:
    payload = json.dumps({"id": "e1", "subscription": "S1", "charge": "C\u00001", "amount": "1"})
    proc = run_cobro(
        ws, "event", "post", "charge.succeeded", "--data", "-", stdin=payload, ok=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "charge: contains a NUL character" in proc.stderr


def test_check_refuses_a_symlinked_and_a_disguised_attachment(ws: Path, tmp_path: Path) -> None:
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8").replace(
        "    # attachment: files/condiciones.pdf", "    attachment: files/condiciones.pdf"
    )
    cfg.write_text(text, encoding="utf-8")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "attachment: files/" in s)
    (ws / "files").mkdir()
    outside = tmp_path / "elsewhere.pdf"
    outside.write_bytes(
        b"%PDF-1.4\n1 0 obj\n<< >>\nendobj\nxref\n0 1\n0000000000 65535 f \n"
        b"trailer\n<< /Size 1 >>\nstartxref\n35\n%%EOF\n"
    )
    (ws / "files" / "condiciones.pdf").symlink_to(outside)
    proc = run_cobro(ws, "check", ok=False)
    assert proc.returncode == 2
    assert (
        f"cobro.yaml:{line}: actions.2.attachment: attachment 'files/condiciones.pdf' leads "
        "outside the workspace" in proc.stderr.replace("\n", "")  # long lines may be wrapped
    )

    (ws / "files" / "condiciones.pdf").unlink()
    (ws / "files" / "condiciones.pdf").write_bytes(b"%PDF-1.4\n<html><body>hi</body></html>\n")
    proc = run_cobro(ws, "check", ok=False)
    assert proc.returncode == 2
    assert (
        f"cobro.yaml:{line}: actions.2.attachment: attachment 'files/condiciones.pdf' is not "
        "really a .pdf file: it has no cross-reference pointer" in proc.stderr.replace("\n", "")
    )


def test_quiet_prints_nothing_and_without_a_terminal_each_phase_gets_one_line(ws: Path) -> None:
    (ws / "customers.csv").write_text(
        "external_id,name,email\nC1,Ann,ann@example.com\n", encoding="utf-8"
    )
    proc = run_cobro(ws, "import", "customers", "customers.csv", "--quiet")
    assert (proc.stdout, proc.stderr) == ("", "")
    proc = run_cobro(ws, "run", "--date", "2026-03-01")
    phases = [s.split(":")[0] for s in proc.stderr.splitlines()]
    assert phases == ["plan", "send"]
    assert re.match(
        r"plan: planned \d+ message\(s\) covering \d+ receivable\(s\) \(\d", proc.stderr
    )
    proc = run_cobro(ws, "run", "--date", "2026-03-02", "--quiet")
    assert (proc.stdout, proc.stderr) == ("", "")
    proc = run_cobro(ws, "simulate", "--from", "2026-03-01", "--to", "2026-03-03", "--json")
    assert proc.stderr.startswith("simulate: ") and "over 3 day(s)" in proc.stderr
    json.loads(proc.stdout)


def test_a_bad_calendar_is_one_line_per_field_from_cobro_check(ws: Path) -> None:
    cfg = ws / "cobro.yaml"
    text = cfg.read_text(encoding="utf-8")
    first = len(text.splitlines()) + 3  # the line of holidays:
    cfg.write_text(
        text + "\ncalendar:\n"
        "  holidays: {country: ES, region: XX}\n"
        "  business_days: [mon, funday]\n"
        "  windows:\n"
        '    sms: {start: "21:00", end: "09:00"}\n',
        encoding="utf-8",
    )
    proc = run_cobro(ws, "check", ok=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    problems = [s.removeprefix(f"{cfg}:") for s in proc.stderr.splitlines() if "cobro.yaml:" in s]
    assert [p.split(" ", 2)[:2] for p in problems] == [
        [f"{first}:", "calendar.holidays.region:"],
        [f"{first + 1}:", "calendar.business_days.1:"],
        [f"{first + 3}:", "calendar.windows.sms:"],
    ]
    assert "'XX' is not a region of ES" in problems[0]
    assert "the window ends (09:00) before it starts (21:00)" in problems[2]
