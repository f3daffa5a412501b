"""Policies and templates: the phases as configured; each template previewed for a chosen
debtor (or the sample ``cobro check`` uses) in both languages, as an email and as the SMS
line; a template ``cobro check`` refuses shows its reason word for word."""

from __future__ import annotations

import re

from e2e.cli import run_cobro

from .conftest import Site
from .test_messages import text_of

BROKEN = """{% extends "_layout.j2" %}
{% block subject %}{{ company.name }}: pago vencido de {{ customer.nickname }}{% endblock %}
{% block claim %}Pague, por favor.{% endblock %}
"""


def test_the_policies_page_shows_every_phase_as_configured(site: Site) -> None:
    page = site.staff("read-only").get("/dashboard/policies")
    assert page.status_code == 200
    html = page.text
    assert 'id="check-ok"' in html  # cobro check finds nothing wrong
    phases = {
        step: text_of(row).strip()
        for step, row in re.findall(r'<tr data-phase="([^"]+)">(.*?)</tr>', html, re.S)
    }
    assert list(phases) == [
        "b2b/00", "b2b/01", "b2b/02", "b2b/03", "b2b/04", "b2b/05",
        "consumer/before", "consumer/due", "consumer/after",
    ]  # fmt: skip
    assert phases["b2b/00"].startswith("00 · Debt due in the next 7 days 7 days before due -7")
    assert "Correo Completo (texto y documentos) deudor" in phases["b2b/00"]
    assert "deudor, comercial, responsable de cuenta" in phases["b2b/05"]
    assert "cada 14 d" in phases["b2b/05"] and "Bloquea la cuenta" in phases["b2b/05"]
    assert "Enlace al portal" in phases["b2b/04"]
    assert "cada 10 d · como máximo 3" in phases["consumer/after"]
    assert 'href="/dashboard/templates/b2b_05"' in html
    templates = re.findall(r'<tr data-template="([^"]+)">', html)
    assert "b2b_00" in templates and "receipt" in templates and "statement" not in templates
    # What uses a template: a phase by its name in cobro.yaml, a notice in the page's words.
    rows = dict(re.findall(r'<tr data-template="([^"]+)">(.*?)</tr>', html, re.S))
    assert "Recibo de pago" in text_of(rows["receipt"]) and "Payment" not in rows["receipt"]
    assert "Aviso bancario" in text_of(rows["banking_notice"])
    assert "b2b 01 · Overdue and unpaid for 7 days" in text_of(rows["b2b_01"])


def test_a_template_is_previewed_for_a_debtor_in_both_languages(site: Site) -> None:
    reader = site.staff("read-only")
    sample = reader.get("/dashboard/templates/b2b_01")
    assert sample.status_code == 200
    assert "Generada con los datos de ejemplo que usa cobro check." in sample.text
    assert "INV-0001" in sample.text  # the sample's item
    page = reader.get("/dashboard/templates/b2b_01?debtor=C1")
    assert page.status_code == 200
    html = page.text
    es = text_of(html.partition('id="preview-es"')[2].partition("</section>")[0])
    en = text_of(html.partition('id="preview-en"')[2].partition("</section>")[0])
    assert "Generada para Acme Industrial (C1)" in html
    assert "Distribuciones Demo S.L.: pago vencido" in es
    # The SMS line: the subject and the total of C1's open items (F-2 is not disputed).
    sms = "Distribuciones Demo S.L.: pago vencido - Total pendiente: 1.100,00 €, 50,00 US$"
    assert f"{sms} {len(sms)} caracteres" in es
    assert "Estimado/a Acme Industrial," in es
    # The plain text lists C1's open items as of today.
    assert "- F-1 · Vencimiento 20 dic 2024 · Pendiente 600,00 € · Vencido (74 días)" in es
    assert "F-2" in es and "F-7" in es and "F-3" not in es
    assert "Distribuciones Demo S.L.: overdue payment - Total outstanding: €1,100.00, $50.00" in en
    assert "- F-1 · Due date Dec 20, 2024 · Outstanding €600.00 · Overdue (74 days)" in en
    es_html = html.partition('id="preview-es"')[2]
    frame = re.search(r'<iframe class="email" sandbox [^>]*src="([^"]+)"', es_html)
    assert frame and frame.group(1) == "/dashboard/templates/b2b_01/es.html?debtor=C1"
    email = reader.get(frame.group(1))
    assert email.status_code == 200
    assert "F-1" in email.text and "600,00" in email.text and "Acme Industrial" in email.text
    csp = email.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script" not in csp
    assert email.headers["x-frame-options"] == "SAMEORIGIN"
    english = reader.get("/dashboard/templates/b2b_01/en.html?debtor=C1")
    assert english.status_code == 200 and "F-1" in english.text
    # No such debtor, template or language: not found.
    assert reader.get("/dashboard/templates/b2b_01?debtor=C9").status_code == 404
    assert reader.get("/dashboard/templates/nope").status_code == 404
    assert reader.get("/dashboard/templates/../cobro.yaml").status_code == 404
    assert reader.get("/dashboard/templates/b2b_01/fr.html").status_code == 404


def test_a_template_cobro_check_refuses_shows_its_reason_word_for_word(site: Site) -> None:
    acme = site.acme.root
    (acme / "templates").mkdir(exist_ok=True)
    (acme / "templates" / "b2b_01.es.j2").write_text(BROKEN, encoding="utf-8")
    check = run_cobro(acme, "check", ok=False)
    said = [line for line in check.stderr.splitlines() if "b2b_01.es.j2" in line]
    assert said and "nickname" in said[0]
    policies = site.staff("read-only").get("/dashboard/policies")
    shown = [text_of(x).strip() for x in re.findall(r"<code>(.*?)</code>", policies.text)]
    for line in said:
        assert line in [s.replace("&#39;", "'") for s in shown], line
    assert re.search(r'data-template="b2b_01">.*?Rechazada', policies.text, re.S)
    page = site.staff("read-only").get("/dashboard/templates/b2b_01?debtor=C1")
    assert page.status_code == 200
    problems = page.text.partition('id="template-problems"')[2].partition("</div>")[0]
    for line in said:
        assert line.replace("'", "&#39;") in problems
    # The Spanish preview cannot be rendered and says why; the English one still is.
    es = page.text.partition('id="preview-es"')[2].partition("</section>")[0]
    assert "La plantilla no se puede generar" in es and "nickname" in es
    assert "<iframe" not in es
    en = page.text.partition('id="preview-en"')[2].partition("</section>")[0]
    assert "<iframe" in en
    frame = site.staff("read-only").get("/dashboard/templates/b2b_01/es.html?debtor=C1")
    assert frame.status_code == 422 and "nickname" in frame.text
