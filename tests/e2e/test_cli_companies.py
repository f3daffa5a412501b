"""Several companies on one server, as an operator sets them up: ``cobro companies add``,
each company's data and keys by its own directory, one ``cobro serve`` for all of them,
and each key and link reaching its own company only."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .cli import copy_workspace, free_port, run_cobro, start_serving
from .test_cli_portal import write

# The tests share module-scoped fixtures: with pytest-xdist one worker runs them all, in
# order (--dist loadgroup, pyproject.toml).
pytestmark = pytest.mark.xdist_group("tests/e2e/test_cli_companies.py")


def company_with_a_claim(root: Path, slug: str, debtor: str, email: str) -> Path:
    run_cobro(root, "companies", "add", slug, "--name", f"{slug.title()} S.L.")
    ws = root / slug
    write(ws / "customers.csv", f"external_id,name,kind,email\nB1,{debtor},business,{email}\n")
    write(
        ws / "receivables.csv",
        "external_id,customer,number,due_on,amount\nR1,B1,F-001,2026-03-01,1200.00\n",
    )
    run_cobro(ws, "import", "customers", "customers.csv")
    run_cobro(ws, "import", "receivables", "receivables.csv")
    run_cobro(ws, "run", "--date", "2026-02-22")
    return ws


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A server root with two companies, each with a debtor B1 sent a claim."""
    root = tmp_path_factory.mktemp("companies") / "srv"
    company_with_a_claim(root, "acme", "Ferretería Norte", "pagos@norte.example")
    company_with_a_claim(root, "beta", "Talleres Sur", "ap@sur.example")
    return root


@pytest.fixture
def root(built: Path, tmp_path: Path) -> Path:
    return copy_workspace(built, tmp_path / "srv")


@pytest.fixture
def served(root: Path) -> Iterator[str]:
    proc, port, line = start_serving(root)
    try:
        assert f"on http://127.0.0.1:{port}/" in line, line + proc.stderr.read()
        assert "Acme S.L., Beta S.L." in line
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_companies_share_the_roots_database_and_list(root: Path) -> None:
    listed = run_cobro(root, "companies", "list").stdout

    assert (root / "cobro-server.yaml").is_file() and (root / "cobro.db").is_file()
    assert not (root / "acme" / "cobro.db").exists()  # the root's database, not its own
    assert "acme" in listed and "Acme S.L." in listed and "Beta S.L." in listed
    assert "cobro.db*" in (root / ".gitignore").read_text(encoding="utf-8")


def test_one_server_serves_each_company_its_own_links_and_keys(root: Path, served: str) -> None:
    acme_key = run_cobro(root / "acme", "keys", "create", "--name", "ERP").stdout.strip()
    beta_key = run_cobro(root / "beta", "keys", "create", "--name", "ERP").stdout.strip()
    links = {
        slug: run_cobro(
            root / slug, "portal", "link", "B1", "--base", f"{served}/portal"
        ).stdout.strip()
        for slug in ("acme", "beta")
    }

    acme_page = httpx.get(links["acme"], timeout=30)
    beta_page = httpx.get(links["beta"], timeout=30)
    acme_debtor = httpx.get(
        f"{served}/api/v1/customers/B1",
        headers={"authorization": f"Bearer {acme_key}"},
        timeout=30,
    )
    beta_list = httpx.get(
        f"{served}/api/v1/customers", headers={"authorization": f"Bearer {beta_key}"}, timeout=30
    )

    assert acme_page.status_code == beta_page.status_code == 200
    assert "Ferretería Norte" in acme_page.text and "Talleres Sur" not in acme_page.text
    assert "Talleres Sur" in beta_page.text and "Ferretería Norte" not in beta_page.text
    assert acme_debtor.json()["name"] == "Ferretería Norte"
    assert [c["name"] for c in beta_list.json()["data"]] == ["Talleres Sur"]


def test_keys_are_shown_once_listed_without_the_secret_and_revoked(root: Path, served: str) -> None:
    ws = root / "acme"
    made = json.loads(
        run_cobro(ws, "keys", "create", "--name", "ERP", "--role", "collector", "--json").stdout
    )
    listed = run_cobro(ws, "keys", "list", "--json").stdout
    auth = {"authorization": f"Bearer {made['key']}"}
    before = httpx.get(f"{served}/api/v1/customers", headers=auth, timeout=30)
    run_cobro(ws, "keys", "revoke", made["prefix"])
    after = httpx.get(f"{served}/api/v1/customers", headers=auth, timeout=30)

    assert made["key"].startswith(f"cobro_{made['prefix']}_") and made["role"] == "collector"
    assert made["key"] not in listed and made["key"] not in (ws / "cobro.yaml").read_text()
    assert json.loads(listed)[0]["prefix"] == made["prefix"]
    assert before.status_code == 200 and after.status_code == 401
    assert json.loads(run_cobro(ws, "keys", "list", "--json").stdout)[0]["revoked_at"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("keys", "create", "--name", "x", "--role", "root"), "role: 'root' is not one of"),
        (("keys", "create", "--name", ""), "name: give 1 to 100 printable characters"),
        (("keys", "revoke", "nosuchkey"), "no key 'nosuchkey' in this company"),
    ],
)
def test_bad_key_commands_say_what_is_wrong_on_one_line(
    root: Path, args: tuple[str, ...], message: str
) -> None:
    proc = run_cobro(root / "acme", *args, ok=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {message}") and proc.stderr.count("\n") == 1


def test_a_bad_company_id_or_a_duplicated_one_is_refused(root: Path) -> None:
    bad = run_cobro(root, "companies", "add", "Bad Id", ok=False)
    shutil.copytree(root / "acme", root / "acme-copy")
    duplicated = run_cobro(root, "serve", "--port", str(free_port()), ok=False)

    assert bad.returncode == 2 and "'Bad Id': a company id is 1-40 of a-z" in bad.stderr
    assert duplicated.returncode == 2
    assert "company.id 'acme' is also the id of" in duplicated.stderr
    assert "Traceback" not in duplicated.stderr
