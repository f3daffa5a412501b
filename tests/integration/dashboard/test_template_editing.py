"""A template edited on its page: the form's text previewed in both languages and as the
SMS line without saving it, saved as the workspace's own copy once ``cobro check`` accepts
it (its reasons word for word otherwise), a copy changed meanwhile not written over,
Cobro's default restored after a confirmation; admins only, the form's token, names the
configuration knows, the audit log."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from cobro.config.checks import check_workspace, sample_context
from cobro.config.template_files import read_template
from cobro.engine.runs import templates_for
from cobro.render.templates import TemplateSet

from ..conftest import STARTER_CONFIG
from .config_support import audit_rows, html_text, page_form
from .conftest import Site
from .helpers import Browser
from .test_messages import text_of

PAGE = "/dashboard/templates/b2b_01"
ES = "b2b_01.es.j2"
EN = "b2b_01.en.j2"
BROKEN = """{% extends "_layout.j2" %}
{% block subject %}{{ company.name }}: pago vencido de {{ customer.nickname }}{% endblock %}
{% block claim %}Pague, por favor.{% endblock %}
"""


def copy_of(site: Site, filename: str, company: str = "acme") -> Path:
    return site.companies[company].root / "templates" / filename


def edit_form(browser: Browser, page: str = PAGE) -> dict[str, Any]:
    """The edit form as the page shows it (a browser drops the newline that follows
    ``<textarea>``)."""
    response = browser.get(page)
    assert response.status_code == 200, response.text
    form = page_form(response.text, "template-edit")
    for key in ("source_es", "source_en"):
        form[key] = form[key].removeprefix("\n")
    return form


def section(html: str, language: str) -> str:
    return html.partition(f'id="preview-{language}"')[2].partition("</section>")[0]


def test_an_admin_previews_the_forms_text_in_both_languages_and_nothing_is_saved(
    site: Site,
) -> None:
    admin = site.staff("admin")
    form = edit_form(admin, f"{PAGE}?debtor=C1")
    packaged = (
        Path(__file__).parents[3] / "src" / "cobro" / "render" / "templates" / ES
    ).read_text(encoding="utf-8")
    assert form["source_es"] == packaged and form["debtor"] == "C1"
    form["source_es"] = packaged.replace(": pago vencido", ": recordatorio de pago").replace(
        "Según nuestros registros", "Le recordamos que"
    )
    shown = admin.post(PAGE, data={**form, "do": "preview"})
    assert shown.status_code == 200
    assert "Vista previa del texto del formulario de abajo: sin guardar." in shown.text
    es = text_of(section(shown.text, "es"))
    sms = "Distribuciones Demo S.L.: recordatorio de pago - Total pendiente: 1.100,00 €, 50,00 US$"
    assert f"{sms} {len(sms)} caracteres" in es
    assert "Le recordamos que, los siguientes documentos" in es  # the plain text, C1's items
    assert "F-1" in es
    en = text_of(section(shown.text, "en"))
    assert "Distribuciones Demo S.L.: overdue payment - Total outstanding" in en
    # The email's frame shows the text previewed, for this user only.
    frame = re.search(
        r'<iframe class="email" sandbox [^>]*src="([^"]+)"', section(shown.text, "es")
    )
    assert frame and "draft=" in frame.group(1) and "debtor=C1" in frame.group(1)
    url = html_text(frame.group(1))
    email = admin.get(url)
    assert email.status_code == 200
    assert "Le recordamos que" in email.text and "Acme Industrial" in email.text
    assert site.staff("admin").get(url).status_code == 404  # another session's draft
    # The form shows the text previewed; nothing was written or audited.
    again = page_form(shown.text, "template-edit")
    assert "recordatorio de pago" in again["source_es"]
    assert not copy_of(site, ES).exists() and not copy_of(site, EN).exists()
    assert audit_rows(site.acme) == []
    saved_page = admin.get(f"{PAGE}?debtor=C1")
    assert "pago vencido" in text_of(section(saved_page.text, "es"))


def test_an_admin_saves_a_template_it_is_used_at_once_audited_and_restored(site: Site) -> None:
    admin = site.staff("admin")
    form = edit_form(admin)
    text = form["source_es"].replace(": pago vencido", ": aviso de impago")
    saved = admin.post(PAGE, data={**form, "source_es": text.replace("\n", "\r\n"), "do": "save"})
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{PAGE}?done=saved"
    assert copy_of(site, ES).read_text(encoding="utf-8") == text  # the file's line ends
    assert not copy_of(site, EN).exists()  # the English text was not changed
    page = admin.get(saved.headers["location"])
    assert "Guardada en templates/; en uso desde ahora." in page.text
    assert "Copia propia de este espacio de trabajo" in page.text
    assert "aviso de impago" in text_of(section(page.text, "es"))
    assert check_workspace(site.acme.root) == []
    # The engine's templates (kept compiled in this process) use the new copy, and a copy
    # added later of a template already loaded from Cobro's own.
    sample = sample_context(site.acme.config, "es_ES")
    sample["company"] = {**sample["company"], "name": "Acme"}  # type: ignore[dict-item]
    engine = templates_for(site.acme)
    assert engine.render("b2b_01", "es", sample).subject == "Acme: aviso de impago"
    assert engine.render("b2b_01", "en", sample).subject == "Acme: overdue payment"
    form = edit_form(admin)
    form["source_en"] = form["source_en"].replace(": overdue payment", ": unpaid notice")
    assert admin.post(PAGE, data={**form, "do": "save"}).status_code == 303
    assert engine.render("b2b_01", "en", sample).subject == "Acme: unpaid notice"
    rows = audit_rows(site.acme)
    assert [(r["actor"], r["role"], r["action"], r["subject"]) for r in rows] == [
        ("admin@acme.example", "admin", "config.template.save", "b2b_01")
    ] * 2
    assert rows[0]["changes"] == [{"path": f"templates/{ES}", "old": None, "new": text}]
    audit = html_text(site.staff("read-only").get("/dashboard/audit?kind=config").text)
    assert "Plantilla cambiada" in audit and f"<code>templates/{ES}</code>" in audit
    # Restoring the default asks first, then removes both copies.
    assert 'id="restore"' in admin.get(PAGE).text
    ask = admin.get(f"{PAGE}/restore")
    assert ask.status_code == 200
    assert f"templates/{EN}, templates/{ES}" in ask.text
    confirm = page_form(ask.text, "confirm-form")
    assert copy_of(site, ES).exists()  # asking removed nothing
    done = admin.post(f"{PAGE}/restore", data=confirm)
    assert done.status_code == 303 and done.headers["location"] == f"{PAGE}?done=restored"
    assert not copy_of(site, ES).exists() and not copy_of(site, EN).exists()
    assert engine.render("b2b_01", "es", sample).subject == "Acme: pago vencido"
    restored = admin.get(done.headers["location"])
    assert "Vuelve a usarse la plantilla de Cobro." in restored.text
    assert 'id="restore"' not in restored.text
    assert admin.get(f"{PAGE}/restore").status_code == 404  # nothing left to restore
    last = audit_rows(site.acme)[-1]
    assert last["action"] == "config.template.restore"
    assert {c["path"] for c in last["changes"]} == {f"templates/{ES}", f"templates/{EN}"}
    assert all(c["new"] is None for c in last["changes"])


def test_a_text_cobro_check_refuses_is_not_saved_and_its_reasons_are_shown_word_for_word(
    site: Site,
) -> None:
    path = copy_of(site, ES)
    path.parent.mkdir()
    path.write_text(BROKEN, encoding="utf-8")  # what cobro check says of it, by hand
    expected = [str(p) for p in check_workspace(site.acme.root) if ES in str(p)]
    path.unlink()
    assert expected and "nickname" in expected[0]
    admin = site.staff("admin")
    form = edit_form(admin)
    refused = admin.post(PAGE, data={**form, "source_es": BROKEN, "do": "save"})
    assert refused.status_code == 422
    shown = html_text(refused.text)
    assert "No se ha guardado: cobro check diría esto:" in shown
    for line in expected:
        assert f"<code>{line}</code>" in shown
    assert not path.exists() and audit_rows(site.acme) == []
    assert check_workspace(site.acme.root) == []
    # The form keeps the text typed, and its preview says why it cannot be rendered.
    assert "customer.nickname" in page_form(refused.text, "template-edit")["source_es"]
    es = section(refused.text, "es")
    assert "La plantilla no se puede generar" in es and "nickname" in es
    # A preview of it is not a refusal: nothing is checked or saved.
    previewed = admin.post(PAGE, data={**form, "source_es": BROKEN, "do": "preview"})
    assert previewed.status_code == 200 and "nickname" in section(previewed.text, "es")
    assert not path.exists()


def test_a_template_changed_since_the_page_was_opened_is_not_written_over(site: Site) -> None:
    admin = site.staff("admin")
    form = edit_form(admin)
    path = copy_of(site, ES)
    path.parent.mkdir()
    by_hand = form["source_es"].replace(": pago vencido", ": editado a mano")
    path.write_text(by_hand, encoding="utf-8")  # someone edits the file meanwhile
    text = form["source_es"].replace(": pago vencido", ": desde el panel")
    refused = admin.post(PAGE, data={**form, "source_es": text, "do": "save"})
    assert refused.status_code == 409
    assert "Otra persona ha cambiado esta plantilla" in refused.text
    assert path.read_text(encoding="utf-8") == by_hand and audit_rows(site.acme) == []
    again = page_form(refused.text, "template-edit")
    assert "editado a mano" in again["source_es"]  # the page shows the file as it is now
    stale = admin.post(f"{PAGE}/restore", data={"csrf": form["csrf"], "digest": form["digest"]})
    assert stale.status_code == 409 and path.exists()
    assert audit_rows(site.acme) == []


@pytest.mark.parametrize("role", ["collector", "read-only"])
def test_only_an_admin_edits_previews_or_restores_a_template(site: Site, role: str) -> None:
    path = copy_of(site, ES)
    path.parent.mkdir()
    path.write_text(BROKEN.replace("customer.nickname", "customer.name"), encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    form = edit_form(site.staff("admin"))
    user = site.staff(role)
    page = user.get(PAGE)
    assert page.status_code == 200
    assert 'id="template-edit"' not in page.text and 'id="restore"' not in page.text
    assert "Solo un administrador puede cambiar las plantillas." in page.text
    assert "Pague, por favor." in page.text  # the source is shown, read only
    token = user.csrf(PAGE)
    for do in ("preview", "save"):
        refused = user.post(PAGE, data={**form, "csrf": token, "do": do, "source_es": "x"})
        assert refused.status_code == 403
        assert f"Su rol ({role}) no permite hacer esto." in refused.text
    restore = user.post(f"{PAGE}/restore", data={"csrf": token, "digest": form["digest"]})
    assert restore.status_code == 403
    assert path.read_text(encoding="utf-8") == before and audit_rows(site.acme) == []


def test_a_form_without_its_token_changes_nothing(site: Site) -> None:
    admin = site.staff("admin")
    form = edit_form(admin)
    form.update(source_es="{% extends '_layout.j2' %}{% block subject %}x{% endblock %}")
    for token in ("", site.staff("admin").csrf(PAGE)):
        for url in (PAGE, f"{PAGE}/restore"):
            assert admin.post(url, data={**form, "csrf": token, "do": "save"}).status_code == 403
    anonymous = site.browser()
    response = anonymous.post(PAGE, data={**form, "do": "save"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("/dashboard/login")
    assert not copy_of(site, ES).exists() and audit_rows(site.acme) == []


def test_another_companys_admin_edits_its_own_templates_only(site: Site) -> None:
    beta = site.staff("admin", company="beta")
    form = edit_form(beta)
    text = form["source_es"].replace(": pago vencido", ": de beta")
    assert beta.post(PAGE, data={**form, "source_es": text, "do": "save"}).status_code == 303
    assert copy_of(site, ES, "beta").read_text(encoding="utf-8") == text
    assert not copy_of(site, ES).exists()
    assert audit_rows(site.acme) == [] and len(audit_rows(site.beta)) == 1
    assert "pago vencido" in text_of(section(site.staff("admin").get(PAGE).text, "es"))


@pytest.mark.parametrize(
    "name",
    ["..%2Fcobro.yaml", "%2E%2E", "%2Fetc%2Fpasswd", "_layout", "statement_pdf", "nope"],
)
def test_only_a_template_the_configuration_names_can_be_edited(site: Site, name: str) -> None:
    admin = site.staff("admin")
    form = edit_form(admin)
    before = (site.acme.root / "cobro.yaml").read_text(encoding="utf-8")
    url = f"/dashboard/templates/{name}"
    assert admin.get(url).status_code == 404
    assert admin.get(f"{url}/restore").status_code == 404
    for do in ("preview", "save"):
        assert admin.post(url, data={**form, "do": do}).status_code == 404
    assert admin.post(f"{url}/restore", data=form).status_code == 404
    assert not (site.acme.root / "templates").exists()
    assert (site.acme.root / "cobro.yaml").read_text(encoding="utf-8") == before
    assert audit_rows(site.acme) == []


@pytest.mark.parametrize("name", ["../cobro", "/etc/passwd", "a/b", "", "x" * 101])
def test_a_name_that_is_a_path_is_no_template(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="not a template name"):
        read_template(tmp_path, name)


def test_a_preview_renders_the_text_given_in_the_sandbox_with_its_limits(
    tmp_path: Path,
) -> None:
    from cobro.config.loader import parse_config
    from cobro.errors import TemplateError

    sample = sample_context(parse_config(STARTER_CONFIG.read_text(encoding="utf-8")), "es_ES")
    greedy = '{% extends "_layout.j2" %}{% block subject %}{{ "x" * 400000000 }}{% endblock %}'
    templates = TemplateSet(None, "es", overrides={"b2b_01.es.j2": greedy})
    with pytest.raises(TemplateError, match="would produce more than"):
        templates.render("b2b_01", "es", sample)
    unsafe = '{% extends "_layout.j2" %}{% block subject %}{{ "".__class__ }}{% endblock %}'
    templates = TemplateSet(tmp_path, "es", overrides={"b2b_01.es.j2": unsafe})
    with pytest.raises(TemplateError, match="unsafe"):
        templates.render("b2b_01", "es", sample)
