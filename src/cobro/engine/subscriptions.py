"""The daily run's subscription work: upcoming-charge reminders and expirations (seed 003)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, String, and_, cast, literal, or_, select, update

from cobro.config import CobroConfig
from cobro.domain.calendar import send_instant
from cobro.domain.money import Money
from cobro.engine.outbox import insert_planned
from cobro.store import tables as t
from cobro.store.db import insert_ignoring

UPCOMING = "upcoming"


@dataclass(frozen=True)
class SubscriptionsPlanned:
    reminders: int = 0
    expired: int = 0


def settings_since(
    conn: Connection, config: CobroConfig, company_id: int, now: datetime
) -> datetime:
    """Since when the reminder settings hold; a change is not applied retroactively."""
    up = config.subscriptions.upcoming_charge
    fp = hashlib.sha256(
        json.dumps(
            [up.enabled, up.days_before, up.at.isoformat(), config.company.timezone]
        ).encode()
    ).hexdigest()
    co = t.companies.c
    row = conn.execute(
        select(co.notice_fingerprint, co.notice_settings_since).where(co.id == company_id)
    ).one()
    if row.notice_fingerprint == fp and row.notice_settings_since is not None:
        since: datetime = row.notice_settings_since
        return since
    conn.execute(
        update(t.companies)
        .where(co.id == company_id)
        .values(notice_fingerprint=fp, notice_settings_since=now)
    )
    return now


def plan_upcoming_reminders(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    now: datetime,
    run_id: int | None,
) -> int:
    """Reminders for charges ``days_before`` days after ``run_on``, at the reminder time.

    Only active subscriptions, not for a charge inside a pause, and only when
    both the charge date and the settings were known before the reminder's
    moment (not retroactive).
    """
    up = config.subscriptions.upcoming_charge
    since = settings_since(conn, config, company_id, now)
    if not up.enabled:
        return 0
    moment = send_instant(run_on, up.at, config.company.timezone)
    if since > moment:
        return 0
    charge_on = run_on + timedelta(days=up.days_before)
    s = t.subscriptions.c
    due = select(
        literal(company_id),
        s.customer_id,
        literal(f"{UPCOMING}/", String) + cast(s.id, String),
        literal(charge_on),
        literal("planned", String),
        literal(moment, t.UTCDateTime),
        literal(moment, t.UTCDateTime),
        literal(run_id, Integer),
        literal(now, t.UTCDateTime),
    ).where(
        s.company_id == company_id,
        s.status == "active",
        s.next_charge_on == charge_on,
        s.charge_known_at <= moment,
        or_(s.ends_on.is_(None), s.ends_on >= charge_on),
        ~and_(
            s.pause_from.is_not(None),
            s.pause_from <= charge_on,
            or_(s.pause_until.is_(None), s.pause_until >= charge_on),
        ),
    )
    res = insert_planned(conn, due)
    return res


def expire_ended(
    conn: Connection, config: CobroConfig, company_id: int, run_on: date, now: datetime
) -> int:
    """Subscriptions whose end date is reached become expired; the admin is told."""
    s = t.subscriptions.c
    ended = conn.execute(
        update(t.subscriptions)
        .where(
            s.company_id == company_id,
            s.ends_on.is_not(None),
            s.ends_on <= run_on,
            s.status != "expired",
        )
        .values(status="expired", next_charge_on=None, updated_at=now)
        .returning(
            s.id,
            s.customer_id,
            s.external_id,
            s.plan,
            s.kind,
            s.price_minor,
            s.currency,
            s.cycle,
            s.ends_on,
        )
    ).all()
    admin = config.subscriptions.admin
    if ended and admin.expired and admin.email:
        rows: list[dict[str, Any]] = [
            {
                "company_id": company_id,
                "customer_id": e.customer_id,
                "step": f"admin/expired/{e.id}",
                "occurrence_on": run_on,
                "status": "planned",
                "due_at": now,
                "next_attempt_at": now,
                "payload": {
                    "event": "expired",
                    "subscription": {
                        "subscription": e.external_id,
                        "plan": e.plan,
                        "kind": e.kind,
                        "price": str(Money.from_minor(e.price_minor, e.currency).amount),
                        "currency": e.currency,
                        "cycle": e.cycle,
                        "next_charge_on": None,
                        "ends_on": e.ends_on.isoformat(),
                    },
                    "at": now.isoformat(),
                },
                "created_at": now,
            }
            for e in ended
        ]
        conn.execute(insert_ignoring(conn, t.outbox).on_conflict_do_nothing(), rows)
    return len(ended)


def plan_subscriptions(
    conn: Connection,
    config: CobroConfig,
    company_id: int,
    run_on: date,
    now: datetime,
    run_id: int | None,
) -> SubscriptionsPlanned:
    expired = expire_ended(conn, config, company_id, run_on, now)
    reminders = plan_upcoming_reminders(conn, config, company_id, run_on, now, run_id)
    return SubscriptionsPlanned(reminders, expired)
