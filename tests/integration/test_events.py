"""Subscription and banking events (seeds 003 and 000) with a real SMTP server, on each database."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy import func, select

from cobro.engine.banking import AssignmentRefused, assign, unassign
from cobro.engine.runs import dispatch_due, run_day
from cobro.errors import SenderNotConfigured
from cobro.intake.events import EventError, post_event
from cobro.store import tables as t
from cobro.workspace import Workspace

from .conftest import SmtpServer
from .support import html, load

MADRID = ZoneInfo("Europe/Madrid")
ADMIN_LINE = "    email: administracion@demo.example\n"
ADMIN = {ADMIN_LINE: "    email: admin@gym.example\n"}


def at(day: str, hhmm: str = "10:00") -> datetime:
    h, m = (int(x) for x in hhmm.split(":"))
    return datetime.combine(date.fromisoformat(day), time(h, m), MADRID).astimezone(UTC)


@pytest.fixture
def gym(make_ws: Callable[..., Workspace], smtp_server: SmtpServer) -> Workspace:
    ws = make_ws(replace={**smtp_server.replace, **ADMIN})
    load(
        ws,
        "customers",
        {
            "external_id": "M1",
            "name": "Lucía Gómez",
            "email": "lucia@example.com",
            "language": "es",
        },
        {"external_id": "M2", "name": "John Smith", "email": "john@example.com", "language": "en"},
    )
    return ws


def event(ws: Workspace, event_type: str, now: datetime, **data: Any) -> Any:
    result = post_event(ws, event_type, data, now)
    dispatch_due(ws, now)
    return result


def subscribe(
    ws: Workspace, now: datetime, sub: str = "S1", member: str = "M1", **extra: Any
) -> None:
    fields = {"plan": "Mensual Oro", "price": "39.90", "cycle": "monthly", **extra}
    event(
        ws,
        "subscription.created",
        now,
        id=f"created-{sub}",
        customer=member,
        subscription=sub,
        **fields,
    )


def mails(smtp: SmtpServer, to: str | None = None) -> list[Any]:
    msgs = [r.message for r in smtp.received]
    return [m for m in msgs if to is None or m["To"].addresses[0].addr_spec == to]


def subjects(smtp: SmtpServer, to: str) -> list[str]:
    return [m["Subject"] for m in mails(smtp, to)]


# --------------------------------------------------------------------------- intake


def test_redelivered_event_has_no_second_effect(gym: Workspace, smtp_server: SmtpServer) -> None:
    subscribe(gym, at("2026-03-01"), next_charge_on="2026-04-01")
    charge = {"subscription": "S1", "charge": "CH1", "amount": "39.90"}
    first = event(gym, "charge.succeeded", at("2026-03-01"), id="evt-9", **charge)
    again = event(gym, "charge.succeeded", at("2026-03-01", "11:00"), id="evt-9", **charge)
    assert not first.duplicate and again.duplicate
    assert len(mails(smtp_server, "lucia@example.com")) == 1
    with gym.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.charges)).scalar_one() == 1


@pytest.mark.parametrize(
    ("kind", "data", "problem"),
    [
        ("subscription.renamed", {"id": "x"}, "unknown event type 'subscription.renamed'"),
        (
            "charge.succeeded",
            {"id": "x", "subscription": "S1", "charge": "C"},
            "amount: Field required",
        ),
        (
            "subscription.created",
            {
                "id": "x",
                "customer": "M1",
                "subscription": "S9",
                "plan": "P",
                "price": "1",
                "cycle": "fortnightly",
            },
            "cycle: a cycle is weekly",
        ),
        (
            "charge.succeeded",
            {"id": "x", "subscription": "NOPE", "charge": "C", "amount": "1"},
            "no subscription with external_id 'NOPE'",
        ),
    ],
)
def test_unknown_types_and_invalid_payloads_are_refused_and_change_nothing(
    gym: Workspace, kind: str, data: dict[str, Any], problem: str
) -> None:
    with pytest.raises(EventError) as exc:
        post_event(gym, kind, data, at("2026-03-01"))
    assert any(problem in p for p in exc.value.problems), exc.value.problems
    with gym.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.events)).scalar_one() == 0
        assert conn.execute(select(func.count()).select_from(t.outbox)).scalar_one() == 0


# --------------------------------------------------------------------------- reminders


def test_upcoming_charge_reminder_goes_lead_days_before_at_nine_company_time(
    gym: Workspace, smtp_server: SmtpServer
) -> None:
    subscribe(gym, at("2026-03-01"), next_charge_on="2026-03-20")
    run_day(gym, date(2026, 3, 17))
    assert subjects(smtp_server, "lucia@example.com") == []
    report = run_day(gym, date(2026, 3, 18), as_of=at("2026-03-18", "08:59"))
    assert (report.planned, report.sent) == (1, 0)  # planned, due at 09:00
    dispatch_due(gym, at("2026-03-18", "09:00"))
    [msg] = mails(smtp_server, "lucia@example.com")
    assert (
        msg["Subject"] == "Distribuciones Demo S.L.: próximo cobro de 39,90 €"
    )  # subjects fold spaces
    assert msg["Date"].datetime == at("2026-03-18", "09:00")
    assert "20 de marzo de 2026" in msg.get_body(("plain",)).get_content()
    run_day(gym, date(2026, 3, 19))
    assert len(mails(smtp_server, "lucia@example.com")) == 1


def test_no_upcoming_charge_reminder_when_lead_time_already_passed(
    gym: Workspace, smtp_server: SmtpServer
) -> None:
    # Lead 2 days; the subscription becomes known on the 19th with a charge on the 20th.
    subscribe(gym, at("2026-03-19"), next_charge_on="2026-03-20")
    for day in (18, 19, 20):
        run_day(gym, date(2026, 3, day))
    assert subjects(smtp_server, "lucia@example.com") == []


def test_reminder_setting_change_is_not_retroactive(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    ws = make_ws("a", replace={**smtp_server.replace, **ADMIN})
    load(ws, "customers", {"external_id": "M1", "name": "L", "email": "lucia@example.com"})
    subscribe(ws, at("2026-03-01"), next_charge_on="2026-03-20")
    run_day(ws, date(2026, 3, 17))  # lead 2: nothing yet
    ws.close()
    # On the 18th at 10:00 the lead becomes 3 days: the 17th's moment has passed.
    cfg = ws.root / "cobro.yaml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8").replace("    days_before: 2 ", "    days_before: 3 "),
        encoding="utf-8",
    )
    from cobro.workspace import open_workspace

    ws2 = open_workspace(ws.root, str(ws.engine.url.render_as_string(hide_password=False)))
    try:
        run_day(ws2, date(2026, 3, 17), as_of=at("2026-03-18", "10:00"))
        run_day(ws2, date(2026, 3, 18))
        assert subjects(smtp_server, "lucia@example.com") == []
    finally:
        ws2.close()


def test_cycle_change_moves_the_reminder_to_the_new_date(
    gym: Workspace, smtp_server: SmtpServer
) -> None:
    subscribe(gym, at("2026-03-01"), next_charge_on="2026-03-20")
    run_day(gym, date(2026, 3, 18), as_of=at("2026-03-18", "07:00"))  # planned for the 20th
    event(
        gym,
        "subscription.cycle_changed",
        at("2026-03-18", "08:00"),
        id="cyc",
        subscription="S1",
        cycle="quarterly",
        next_charge_on="2026-03-25",
    )
    dispatch_due(gym, at("2026-03-18", "09:00"))
    for day in range(19, 26):
        run_day(gym, date(2026, 3, day))
    [msg] = mails(smtp_server, "lucia@example.com")
    assert "25 de marzo de 2026" in msg.get_body(("plain",)).get_content()
    assert msg["Date"].datetime == at("2026-03-23", "09:00")
    with gym.engine.connect() as conn:
        reasons = (
            conn.execute(select(t.outbox.c.reason).where(t.outbox.c.status == "cancelled"))
            .scalars()
            .all()
        )
    assert reasons == ["the charge moved to 2026-03-25"]


def test_no_reminder_for_a_charge_inside_a_pause(gym: Workspace, smtp_server: SmtpServer) -> None:
    subscribe(gym, at("2026-03-01"), next_charge_on="2026-04-01")
    event(
        gym,
        "subscription.paused",
        at("2026-03-02"),
        id="p",
        subscription="S1",
        **{"from": "2026-03-15", "until": "2026-04-10"},
    )
    for day in range(28, 32):
        run_day(gym, date(2026, 3, day))
    assert subjects(smtp_server, "lucia@example.com") == []


def test_unpaid_reminder_for_a_failed_renewal(gym: Workspace, smtp_server: SmtpServer) -> None:
    subscribe(gym, at("2026-03-01"), next_charge_on="2026-04-01")
    event(
        gym,
        "charge.succeeded",
        at("2026-03-01"),
        id="c1",
        subscription="S1",
        charge="CH1",
        amount="39.90",
    )
    result = event(
        gym,
        "charge.failed",
        at("2026-04-01"),
        id="c2",
        subscription="S1",
        charge="CH2",
        amount="39.90",
        reason="expired_card",
    )
    assert result.notices == ["unpaid/CH2"]
    msg = mails(smtp_server, "lucia@example.com")[-1]
    assert msg["Subject"] == "Distribuciones Demo S.L.: no hemos podido cobrar su suscripción"
    text = msg.get_body(("plain",)).get_content()
    assert "de su suscripción Mensual Oro. La tarjeta ha caducado." in text
    assert "Pagar ahora" in text
    html = msg.get_body(("html",)).get_content()
    assert "expired_card" not in text and "expired_card" not in html  # a sentence, not a code


def test_no_unpaid_reminder_for_a_failed_first_purchase(
    gym: Workspace, smtp_server: SmtpServer
) -> None:
    subscribe(gym, at("2026-03-01"))
    result = event(
        gym,
        "charge.failed",
        at("2026-03-01"),
        id="c1",
        subscription="S1",
        charge="CH1",
        amount="39.90",
    )
    assert result.notices == []
    assert "failed first purchase" in result.notes[0]
    assert mails(smtp_server, "lucia@example.com") == []


def test_receipt_email_has_a_pdf_with_the_amount_date_and_company(
    gym: Workspace, smtp_server: SmtpServer
) -> None:
    subscribe(gym, at("2026-03-01"), member="M2", sub="S2")
    event(
        gym,
        "charge.succeeded",
        at("2026-03-05"),
        id="c1",
        subscription="S2",
        charge="CH-77",
        amount="1250.50",
        charged_at="2026-03-05T09:30:00+01:00",
    )
    [msg] = mails(smtp_server, "john@example.com")
    assert msg["Subject"] == "Distribuciones Demo S.L.: receipt for your payment of €1,250.50"
    [pdf] = list(msg.iter_attachments())
    assert pdf.get_content_type() == "application/pdf" and pdf.get_filename() == "receipt-CH-77.pdf"
    text = PdfReader(io.BytesIO(pdf.get_content())).pages[0].extract_text()
    assert "€1,250.50" in text
    assert "March 5, 2026" in text
    assert "Distribuciones Demo S.L." in text
    assert "John Smith" in text


def png(width: int = 6, height: int = 3) -> bytes:
    """A real PNG image, red, ``width`` x ``height`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + b"\xc8\x1e\x1e" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_the_workspace_logo_and_receipt_template_reach_the_email_and_its_pdf(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    branding = "  branding:\n"
    hosted = "    logo_url: https://demo.example/logo.png\n"
    ws = make_ws(
        replace={**smtp_server.replace, branding: branding + hosted + "    logo_file: logo.png\n"}
    )
    (ws.root / "logo.png").write_bytes(png())
    (ws.root / "templates").mkdir()
    bundled = (resources.files("cobro") / "render" / "templates" / "receipt_pdf.j2").read_text(
        encoding="utf-8"
    )
    (ws.root / "templates" / "receipt_pdf.j2").write_text(
        bundled.replace("<p>{{ L.paid }}</p>", "<p>Gracias por entrenar con nosotros</p>"),
        encoding="utf-8",
    )
    load(ws, "customers", {"external_id": "M1", "name": "Lucía", "email": "lucia@example.com"})
    subscribe(ws, at("2026-03-01"))
    event(
        ws,
        "charge.succeeded",
        at("2026-03-01"),
        id="c",
        subscription="S1",
        charge="CH1",
        amount="39.90",
    )

    [got] = [r for r in smtp_server.received if r.rcpt_tos == ("lucia@example.com",)]
    msg = got.message
    assert msg.get_content_type() == "multipart/mixed"
    related, attached = msg.iter_parts()
    assert related.get_content_type() == "multipart/related"
    alternative, image = related.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert (image.get_content_type(), image["Content-ID"]) == ("image/png", "<logo@cobro>")
    assert image.get_content() == png()
    assert '<img src="cid:logo@cobro"' in html(msg)
    assert b"demo.example/logo.png" not in got.data  # nothing for the mail client to fetch
    pdf = PdfReader(io.BytesIO(attached.get_content()))
    assert "Gracias por entrenar con nosotros" in pdf.pages[0].extract_text()
    assert len(pdf.pages[0].images) == 1


# --------------------------------------------------------------------------- admin


def pay(ws: Workspace, now: datetime, sub: str, charge: str, **extra: Any) -> None:
    event(
        ws,
        "charge.succeeded",
        now,
        id=f"paid-{charge}",
        subscription=sub,
        charge=charge,
        amount="39.90",
        **extra,
    )


def test_admin_is_told_of_new_subscribers_cancellations_and_expiries(
    gym: Workspace, smtp_server: SmtpServer
) -> None:
    subscribe(gym, at("2026-03-01"))
    pay(gym, at("2026-03-01"), "S1", "CH1")
    subscribe(
        gym,
        at("2026-03-01"),
        sub="S2",
        member="M2",
        kind="pass",
        ends_on="2026-03-10",
        cycle="30 days",
    )
    pay(gym, at("2026-03-01"), "S2", "CH2")
    event(
        gym,
        "subscription.cancel_requested",
        at("2026-03-03"),
        id="x",
        subscription="S1",
        effective_on="2026-03-31",
    )
    run_day(gym, date(2026, 3, 10))  # the pass reaches its end date
    assert subjects(smtp_server, "admin@gym.example") == [
        "Nuevo suscriptor: Lucía Gómez · Mensual Oro",
        "Nuevo suscriptor: John Smith · Mensual Oro",
        "Cancelación solicitada: Lucía Gómez · Mensual Oro",
        "Suscripción vencida: John Smith · Mensual Oro",
    ]
    with gym.engine.connect() as conn:
        status = dict(
            conn.execute(select(t.subscriptions.c.external_id, t.subscriptions.c.status)).all()
        )
    assert status == {"S1": "cancel_requested", "S2": "expired"}


def test_a_new_subscriber_is_announced_when_the_first_charge_succeeds_not_before(
    gym: Workspace, smtp_server: SmtpServer
) -> None:
    subscribe(gym, at("2026-03-01"), next_charge_on="2026-04-01")
    assert subjects(smtp_server, "admin@gym.example") == []  # signed up, nothing bought yet
    failed = event(
        gym,
        "charge.failed",
        at("2026-03-01", "10:01"),
        id="f1",
        subscription="S1",
        charge="CH1",
        amount="39.90",
        reason="card_declined",
    )
    assert "failed first purchase" in " ".join(failed.notes)
    assert subjects(smtp_server, "admin@gym.example") == []  # the first charge failed
    pay(gym, at("2026-03-02"), "S1", "CH2")  # paid on a second attempt: bought now
    pay(gym, at("2026-04-01"), "S1", "CH3")  # a renewal is no new subscriber
    [notice] = mails(smtp_server, "admin@gym.example")
    assert notice["Subject"] == "Nuevo suscriptor: Lucía Gómez · Mensual Oro"
    body = notice.get_body(("plain",)).get_content()
    assert "ha comprado por primera vez la tarifa Mensual Oro y ha pagado 39,90\xa0€" in body
    assert [
        m["Subject"].split(":")[1].strip() for m in mails(smtp_server, "lucia@example.com")
    ] == [
        "recibo de su pago de 39,90 €",
        "recibo de su pago de 39,90 €",
    ]


def test_each_admin_notice_can_be_switched_off(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    off = {**ADMIN, "    new_subscriber: true ": "    new_subscriber: false "}
    ws = make_ws(replace={**smtp_server.replace, **off})
    load(ws, "customers", {"external_id": "M1", "name": "L", "email": "lucia@example.com"})
    subscribe(ws, at("2026-03-01"))
    event(ws, "subscription.expired", at("2026-03-02"), id="e", subscription="S1")
    assert [s.split(":")[0] for s in subjects(smtp_server, "admin@gym.example")] == [
        "Suscripción vencida"
    ]


def test_without_a_sender_address_nothing_is_sent_and_the_error_is_clear(
    make_ws: Callable[..., Workspace], smtp_server: SmtpServer
) -> None:
    no_sender = {
        **smtp_server.replace,
        "  sender:                        # nothing is sent until this is a valid address\n"
        "    email: cobros@demo.example\n    name: Cobros Distribuciones Demo\n": "",
        ADMIN_LINE: "",
    }
    ws = make_ws(replace=no_sender)
    load(ws, "customers", {"external_id": "M1", "name": "L", "email": "lucia@example.com"})
    post_event(
        ws,
        "subscription.created",
        {"id": "e", "customer": "M1", "subscription": "S1", "plan": "P", "price": "10"},
        at("2026-03-01"),
    )
    paid = post_event(
        ws,
        "charge.succeeded",
        {"id": "c", "subscription": "S1", "charge": "C1", "amount": "10"},
        at("2026-03-01"),
    )
    assert paid.notes == [
        "admin notice 'new_subscriber' not sent: subscriptions.admin.email is not configured"
    ]
    with pytest.raises(SenderNotConfigured, match=r"company\.sender\.email"):
        dispatch_due(ws, at("2026-03-01"))
    assert smtp_server.received == []


# --------------------------------------------------------------------------- banking


@pytest.fixture
def employer(gym: Workspace) -> Workspace:
    load(
        gym,
        "customers",
        {
            "external_id": "E1",
            "name": "Talleres Norte S.L.",
            "kind": "business",
            "email": "rrhh@norte.example",
        },
    )
    load(
        gym,
        "contacts",
        {
            "external_id": "K1",
            "customer": "E1",
            "name": "Ana Banca",
            "email": "ana@norte.example",
            "roles": "banking",
        },
        {
            "external_id": "K2",
            "customer": "E1",
            "name": "Luis Banca",
            "email": "luis@norte.example",
            "roles": "banking",
        },
        {
            "external_id": "K3",
            "customer": "E1",
            "name": "Marta Dirección",
            "email": "marta@norte.example",
            "roles": "primary",
        },
        {
            "external_id": "K4",
            "customer": "E1",
            "name": "Pedro Ventas",
            "email": "pedro@norte.example",
            "roles": "sales_rep",
        },
    )
    return gym


def assign_all(ws: Workspace, kind: str, *contacts: str) -> None:
    with ws.engine.begin() as conn:
        assign(conn, ws.company_id, kind, list(contacts), at("2026-03-01"))


def recipients(smtp: SmtpServer) -> list[str]:
    return sorted(m["To"].addresses[0].addr_spec for m in mails(smtp))


def test_only_contacts_with_the_banking_role_can_be_assigned(employer: Workspace) -> None:
    with pytest.raises(
        AssignmentRefused, match="K4 does not have the banking & funds transfer role"
    ):
        assign_all(employer, "direct_deposit_change", "K1", "K4")
    with employer.engine.connect() as conn:  # all or nothing: K1 was not assigned either
        assert (
            conn.execute(select(func.count()).select_from(t.banking_assignments)).scalar_one() == 0
        )


def test_stop_payment_goes_only_to_contact_selected_at_entry(
    employer: Workspace, smtp_server: SmtpServer
) -> None:
    assign_all(employer, "stop_payment", "K1", "K2")
    event(
        employer,
        "stop_payment.created",
        at("2026-03-02"),
        id="sp1",
        customer="E1",
        contact="K2",
        details={"check": "1001", "amount": "1200.00"},
    )
    assert recipients(smtp_server) == ["luis@norte.example"]
    text = mails(smtp_server)[0].get_body(("plain",)).get_content()
    assert "check: 1001" in text


def test_bulk_stop_payment_goes_only_to_contact_selected_at_entry(
    employer: Workspace, smtp_server: SmtpServer
) -> None:
    assign_all(employer, "bulk_stop_payment", "K1", "K2")
    event(
        employer,
        "stop_payment.bulk_created",
        at("2026-03-02"),
        id="b1",
        customer="E1",
        contact="K1",
        details={"payments": 14},
    )
    assert recipients(smtp_server) == ["ana@norte.example"]


def test_stop_payment_falls_back_to_assigned_then_primary_when_the_selected_contact_cannot_receive(
    employer: Workspace, smtp_server: SmtpServer
) -> None:
    assign_all(employer, "stop_payment", "K1")
    event(employer, "stop_payment.created", at("2026-03-02"), id="s1", customer="E1", contact="K4")
    assert recipients(smtp_server) == ["ana@norte.example"]  # K4 lacks the role: assigned K1
    with employer.engine.begin() as conn:
        unassign(conn, employer.company_id, "stop_payment", ["K1"])
    event(employer, "stop_payment.created", at("2026-03-02"), id="s2", customer="E1", contact="K4")
    assert recipients(smtp_server) == ["ana@norte.example", "marta@norte.example"]


def test_direct_deposit_notices_go_to_every_assigned_contact(
    employer: Workspace, smtp_server: SmtpServer
) -> None:
    assign_all(employer, "direct_deposit_change", "K1", "K2")
    event(
        employer,
        "direct_deposit.change_notice",
        at("2026-03-02"),
        id="n1",
        customer="E1",
        details={"employee": "E-9", "new_account": "****1234"},
    )
    assign_all(employer, "direct_deposit_reversal", "K2")
    event(employer, "direct_deposit.reversal", at("2026-03-02"), id="r1", customer="E1")
    assert recipients(smtp_server) == [
        "ana@norte.example",
        "luis@norte.example",
        "luis@norte.example",
    ]


def test_notices_go_to_primary_contacts_when_nobody_is_assigned(
    employer: Workspace, smtp_server: SmtpServer
) -> None:
    assign_all(employer, "direct_deposit_change", "K1")
    with employer.engine.begin() as conn:
        unassign(conn, employer.company_id, "direct_deposit_change", ["K1"])
    result = event(
        employer, "direct_deposit.change_notice", at("2026-03-02"), id="n1", customer="E1"
    )
    assert recipients(smtp_server) == ["marta@norte.example"]
    assert "primary contacts" in result.notes[0]


def test_a_pause_announced_for_later_does_not_stop_earlier_reminders(
    gym: Workspace, smtp_server: SmtpServer
) -> None:
    subscribe(gym, at("2026-03-01"), next_charge_on="2026-04-01")
    event(
        gym,
        "subscription.paused",
        at("2026-03-02"),
        id="p",
        subscription="S1",
        **{"from": "2026-05-01", "until": "2026-05-31"},
    )
    run_day(gym, date(2026, 3, 30))
    assert len(mails(smtp_server, "lucia@example.com")) == 1


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"price": "1e30"}, "amount: 1E+30 is too large an amount"),
        ({"price": "9.999"}, "amount: 9.999 has more decimals than EUR allows"),
        ({"price": "10", "plan": "Oro \ud800"}, "payload: contains values that are not valid"),
    ],
)
def test_bad_amounts_and_text_in_events_are_refused_with_a_reason(
    gym: Workspace, data: dict[str, Any], problem: str
) -> None:
    payload = {"id": "e", "customer": "M1", "subscription": "S9", "plan": "Oro", **data}
    with pytest.raises(EventError) as exc:
        post_event(gym, "subscription.created", payload, at("2026-03-01"))
    assert any(problem in p for p in exc.value.problems), exc.value.problems


def test_a_charge_time_without_time_zone_is_refused(gym: Workspace) -> None:
    subscribe(gym, at("2026-03-01"))
    with pytest.raises(EventError) as exc:
        post_event(
            gym,
            "charge.succeeded",
            {
                "id": "c",
                "subscription": "S1",
                "charge": "C1",
                "amount": "1",
                "charged_at": "2026-03-01T10:00:00",
            },
            at("2026-03-01"),
        )
    assert any(p.startswith("charged_at:") for p in exc.value.problems)


def test_a_nul_in_an_event_text_is_refused_and_changes_nothing(gym: Workspace) -> None:
    # PostgreSQL stores no NUL in text or JSON: the event is refused before it is written.
    subscribe(gym, at("2026-03-01"), next_charge_on="2026-04-01")
    with pytest.raises(EventError) as exc:
        post_event(
            gym,
            "charge.succeeded",
            {"id": "evt-nul", "subscription": "S1", "charge": "CH\x001", "amount": "39.90"},
            at("2026-03-01"),
        )
    assert exc.value.problems == ["charge: contains a NUL character"]
    with gym.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.charges)).scalar_one() == 0
        assert (
            conn.execute(
                select(func.count())
                .select_from(t.events)
                .where(t.events.c.external_id == "evt-nul")
            ).scalar_one()
            == 0
        )


def test_an_event_nested_too_deeply_is_refused_and_changes_nothing(gym: Workspace) -> None:
    details: dict[str, Any] = {}
    node = details
    for _ in range(40):
        node["more"] = {}
        node = node["more"]
    with pytest.raises(EventError) as exc:
        post_event(
            gym,
            "stop_payment.created",
            {"id": "evt-deep", "customer": "M1", "details": details},
            at("2026-03-01"),
        )
    assert len(exc.value.problems) == 1
    assert exc.value.problems[0].endswith("nested more than 32 levels deep")
    with gym.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.events)).scalar_one() == 0
