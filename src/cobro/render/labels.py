"""Fixed words of the message layout, per language."""

from __future__ import annotations

import re

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "number": "Document",
        "due": "Due date",
        "amount": "Amount",
        "balance": "Outstanding",
        "status": "Status",
        "overdue": "Overdue",
        "due_today": "Due today",
        "not_due": "Not yet due",
        "days": "days",
        "phase": "phase",
        "total": "Total outstanding",
        "pay": "Pay now",
        "view": "View your account",
        "crm": "Open the account in the CRM",
        "greeting": "Dear",
        "internal": "Internal notice about customer",
        "copy_subject": "Staff copy",
        "copy_intro": "Copy for staff (not sent to the customer) about customer",
        "copy_sent": "Sent to the customer on",
        "copy_told": "What the customer was told:",
        "lq": "\u201c",
        "rq": "\u201d",
    },
    "es": {
        "number": "Documento",
        "due": "Vencimiento",
        "amount": "Importe",
        "balance": "Pendiente",
        "status": "Estado",
        "overdue": "Vencido",
        "due_today": "Vence hoy",
        "not_due": "Por vencer",
        "days": "días",
        "phase": "fase",
        "total": "Total pendiente",
        "pay": "Pagar ahora",
        "view": "Consultar su cuenta",
        "crm": "Abrir la cuenta en el CRM",
        "greeting": "Estimado/a",
        "internal": "Aviso interno sobre el cliente",
        "copy_subject": "Copia interna",
        "copy_intro": "Copia interna (no enviada al cliente) sobre el cliente",
        "copy_sent": "Enviado al cliente el",
        "copy_told": "Lo que se ha dicho al cliente:",
        "lq": "\u00ab",
        "rq": "\u00bb",
    },
}

LANGUAGES = tuple(LABELS)

RECEIPT_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Payment receipt",
        "number": "No.",
        "customer": "Customer",
        "date": "Date",
        "concept": "Description",
        "amount": "Amount",
        "total": "Total paid",
        "paid": "Payment received. Thank you.",
    },
    "es": {
        "title": "Recibo de pago",
        "number": "N.º",
        "customer": "Cliente",
        "date": "Fecha",
        "concept": "Concepto",
        "amount": "Importe",
        "total": "Total pagado",
        "paid": "Pago recibido. Gracias.",
    },
}

STATEMENT_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Statement of account",
        "as_of": "As of",
        "customer": "Customer",
        "customer_id": "Customer no.",
        "number": "Document",
        "kind": "Type",
        "issued": "Issued",
        "due": "Due date",
        "amount": "Amount",
        "balance": "Outstanding",
        "days": "Days overdue",
        "status": "Status",
        "overdue": "Overdue",
        "due_today": "Due today",
        "not_due": "Not yet due",
        "disputed": "Disputed",
        "promised": "Promised",
        "promised_for": "Promised for",
        "total": "Total outstanding",
        "total_overdue": "of which overdue",
        "no_items": "You have no open items. Thank you.",
        "items": "open items",
        "pay_transfer": "Pay by bank transfer",
        "holder": "Account holder",
        "iban": "IBAN",
        "bic": "BIC",
        "bank": "Bank",
        "reference": "Please quote your customer number as the reference",
        "page": "Page",
        "of": "of",
        "invoice": "Invoice",
        "instalment": "Instalment",
        "credit_note": "Credit note",
    },
    "es": {
        "title": "Estado de cuenta",
        "as_of": "A fecha de",
        "customer": "Cliente",
        "customer_id": "N.º de cliente",
        "number": "Documento",
        "kind": "Tipo",
        "issued": "Emisión",
        "due": "Vencimiento",
        "amount": "Importe",
        "balance": "Pendiente",
        "days": "Días vencido",
        "status": "Estado",
        "overdue": "Vencido",
        "due_today": "Vence hoy",
        "not_due": "Por vencer",
        "disputed": "En disputa",
        "promised": "Pago prometido",
        "promised_for": "Pago prometido para el",
        "total": "Total pendiente",
        "total_overdue": "del que vencido",
        "no_items": "No tiene partidas pendientes. Gracias.",
        "items": "partidas pendientes",
        "pay_transfer": "Pago por transferencia bancaria",
        "holder": "Titular",
        "iban": "IBAN",
        "bic": "BIC",
        "bank": "Banco",
        "reference": "Indique su número de cliente como concepto",
        "page": "Página",
        "of": "de",
        "invoice": "Factura",
        "instalment": "Plazo",
        "credit_note": "Abono",
    },
}

CYCLE_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "weekly": "weekly",
        "monthly": "monthly",
        "quarterly": "quarterly",
        "yearly": "yearly",
        "days": "every {n} days",
        "1 days": "daily",
    },
    "es": {
        "weekly": "semanal",
        "monthly": "mensual",
        "quarterly": "trimestral",
        "yearly": "anual",
        "days": "cada {n} días",
        "1 days": "diario",
    },
}


def cycle_label(cycle: str, language: str) -> str:
    """A billing cycle (``monthly``, ``30 days``) in words of ``language``."""
    words = CYCLE_LABELS.get(language, CYCLE_LABELS["en"])
    count, _, unit = cycle.partition(" ")
    if unit == "days" and count.isdigit():
        n = int(count)
        return words["1 days"] if n == 1 else words["days"].format(n=n)
    return words.get(cycle, cycle)


#: A payment provider's decline code (Stripe's names, which most gateways share) -> the
#: kind of reason a member is told. Lost, stolen and fraud codes are told as a plain
#: decline, as card networks ask.
DECLINE_KINDS: dict[str, str] = {
    **dict.fromkeys(
        (
            "card_declined",
            "generic_decline",
            "lost_card",
            "stolen_card",
            "pickup_card",
            "fraudulent",
            "merchant_blacklist",
            "restricted_card",
            "security_violation",
            "no_action_taken",
            "revocation_of_authorization",
            "revocation_of_all_authorizations",
            "stop_payment_order",
            "duplicate_transaction",
            "invalid_amount",
            "testmode_decline",
            "new_account_information_available",
        ),
        "declined",
    ),
    **dict.fromkeys(
        ("do_not_honor", "call_issuer", "not_permitted", "transaction_not_allowed"),
        "ask_bank",
    ),
    **dict.fromkeys(("invalid_account", "account_closed"), "ask_bank"),
    "insufficient_funds": "funds",
    "expired_card": "expired",
    **dict.fromkeys(("incorrect_cvc", "invalid_cvc"), "cvc"),
    **dict.fromkeys(("incorrect_number", "invalid_number"), "number"),
    **dict.fromkeys(("invalid_expiry_month", "invalid_expiry_year"), "expiry"),
    **dict.fromkeys(
        (
            "processing_error",
            "try_again_later",
            "issuer_not_available",
            "reenter_transaction",
            "approve_with_id",
        ),
        "temporary",
    ),
    **dict.fromkeys(
        ("authentication_required", "offline_pin_required", "online_pin_required"),
        "authentication",
    ),
    **dict.fromkeys(("incorrect_pin", "pin_try_exceeded"), "pin"),
    **dict.fromkeys(("card_velocity_exceeded", "withdrawal_count_limit_exceeded"), "limit"),
    **dict.fromkeys(("card_not_supported", "currency_not_supported"), "not_supported"),
}

DECLINE_REASONS: dict[str, dict[str, str]] = {
    "en": {
        "declined": "Your bank declined the payment.",
        "ask_bank": "Your bank declined the payment; it can tell you why.",
        "funds": "The card did not have enough funds.",
        "expired": "The card has expired.",
        "cvc": "The card's security code (CVC) was not correct.",
        "number": "The card number was not correct.",
        "expiry": "The card's expiry date was not correct.",
        "temporary": "A temporary problem stopped the payment; trying again should work.",
        "authentication": "Your bank asked you to confirm the payment and it was not confirmed.",
        "pin": "The card's PIN was not correct.",
        "limit": "The card has reached its spending limit.",
        "not_supported": "The card cannot be used for this payment.",
        "unknown": "The payment could not be completed.",
    },
    "es": {
        "declined": "Su banco ha rechazado el pago.",
        "ask_bank": "Su banco ha rechazado el pago; allí le pueden indicar el motivo.",
        "funds": "La tarjeta no tenía saldo suficiente.",
        "expired": "La tarjeta ha caducado.",
        "cvc": "El código de seguridad (CVC) de la tarjeta no era correcto.",
        "number": "El número de la tarjeta no era correcto.",
        "expiry": "La fecha de caducidad de la tarjeta no era correcta.",
        "temporary": "Un problema temporal impidió el pago; debería funcionar al reintentarlo.",
        "authentication": "Su banco pidió confirmar el pago y no llegó a confirmarse.",
        "pin": "El PIN de la tarjeta no era correcto.",
        "limit": "La tarjeta ha alcanzado su límite de gasto.",
        "not_supported": "La tarjeta no admite este pago.",
        "unknown": "No se ha podido completar el pago.",
    },
}


def decline_reason(code: str, language: str) -> str:
    """The sentence a member reads for a provider's decline ``code`` (``card_declined``,
    ``insufficient_funds``...), in ``language``; any code not known gets a general
    sentence, never the code itself. ``card_declined/insufficient_funds`` reads as its
    most specific part."""
    words = DECLINE_REASONS.get(language, DECLINE_REASONS["en"])
    kinds = [
        DECLINE_KINDS[part]
        for part in re.split(r"[^a-z0-9_]+", code.strip().lower().replace("-", "_"))
        if part in DECLINE_KINDS
    ]
    specific = [k for k in kinds if k != "declined"]
    return words[(specific or kinds or ["unknown"])[0]]


# What an automated call says besides the message (``cobro.channels.voice``), and the
# words of the default spoken message (the layout's ``voice`` block).
VOICE_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "press": "To receive the payment link by text message, press 1.",
        "sms_sent": "We are sending you the payment link by text message. Thank you. Goodbye.",
        "bye": "Thank you. Goodbye.",
        "hello": "Hello",
        "from": "This is an automated call from",
        "owed": "Your account has an overdue balance of",
        "since": "due since",
        "please": "Please make the payment as soon as possible.",
        "and": "and",
        "cents": "cents",
        "cent": "cent",
    },
    "es": {
        "press": "Para recibir el enlace de pago por SMS, pulse 1.",
        "sms_sent": "Le enviamos el enlace de pago por SMS. Gracias. Adiós.",
        "bye": "Gracias. Adiós.",
        "hello": "Hola",
        "from": "Le llamamos de forma automática de parte de",
        "owed": "Su cuenta tiene un saldo vencido de",
        "since": "pendiente desde el",
        "please": "Le rogamos que realice el pago lo antes posible.",
        "and": "con",
        "cents": "céntimos",
        "cent": "céntimo",
    },
}


def voice_label(language: str, key: str) -> str:
    return VOICE_LABELS.get(language, VOICE_LABELS["en"])[key]
