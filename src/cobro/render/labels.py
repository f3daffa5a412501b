"""Fixed words of the message layout, per language."""

from __future__ import annotations

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
