"""The portal's words, in English and Spanish (the message layout's are in render/labels.py)."""

from __future__ import annotations

PORTAL_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Your account",
        "for": "Account of",
        "claim": "The message that brought you here",
        "phase": "Phase",
        "sent_on": "Sent on",
        "subject": "Subject",
        "no_text": "The text of this message is not available.",
        "open_items": "Your open items",
        "no_items": "You have no open items. Thank you.",
        "number": "Document",
        "kind": "Type",
        "issued": "Issue date",
        "due": "Due date",
        "amount": "Amount",
        "balance": "Outstanding",
        "days_overdue": "Days overdue",
        "status": "Status",
        "total": "Total outstanding",
        "invoice": "Invoice",
        "instalment": "Instalment",
        "credit_note": "Credit note",
        "overdue": "Overdue",
        "due_today": "Due today",
        "not_due": "Not yet due",
        "disputed": "Disputed",
        "promised": "Payment promised",
        "promised_for": "Payment promised for",
        "pay": "Pay",
        "pay_button": "Pay",
        "pay_note": "Items in dispute are not included.",
        "bank": "Pay by bank transfer",
        "holder": "Account holder",
        "iban": "IBAN",
        "bic": "BIC",
        "bank_name": "Bank",
        "reference": "Reference to quote",
        "read": "Confirm you have read this message",
        "read_why": (
            "Opening this page does not tell us you have read the message. If you have, "
            "please say so with this button."
        ),
        "read_button": "I have read this message",
        "read_at": "You confirmed reading this message on",
        "done_read": "Thank you: your reading of this message is recorded.",
        "dispute": "Dispute an item",
        "dispute_why": "If an item is wrong or you do not recognise it, tell us why.",
        "item": "Item",
        "reason": "Reason",
        "attachment": "Attachment (optional: PDF, PNG or JPEG, at most {kb} KB)",
        "dispute_button": "Send the dispute",
        "done_dispute": (
            "Thank you: your dispute is recorded. We will look into it; no reminders will be "
            "sent about that item meanwhile."
        ),
        "promise": "Promise to pay",
        "promise_why": "Tell us when you will pay; we will not remind you before then.",
        "items_to_pay": "Items",
        "promise_date": "I will pay by",
        "promise_limit": "at most {days} days from today",
        "note": "Note (optional)",
        "promise_button": "Send the promise",
        "done_promise": "Thank you: your promise to pay is recorded.",
        "statement": "Download the statement (PDF)",
        "earlier": "Earlier messages",
        "no_earlier": "None.",
        "language": "Language",
        "err_reason": "Please write the reason for the dispute.",
        "err_item": "Please choose one of your open items.",
        "err_items": "Please choose at least one of your open items.",
        "err_date": "Please give the date you will pay, as a date.",
        "err_past": "The date you will pay cannot be in the past.",
        "err_far": "The date you will pay can be at most {days} days from today.",
        "err_big": "The attachment is too large: at most {kb} KB.",
        "err_type": "The attachment must be a PDF, PNG or JPEG file: {why}.",
        "err_refused": "This could not be recorded: {why}.",
        "err_form": "There is a problem with the form:",
        "refused_title": "This link cannot be opened",
        "invalid": (
            "This link is not valid. It may have been copied incompletely or changed. "
            "Please open it again from the message you received."
        ),
        "expired": "This link has expired. Please ask for a new link",
        "expired_contact": "by writing to",
        "forbidden": (
            "This form could not be accepted: it was not sent from this page, or the page "
            "has been open in another window since. Please go back to the page and try again."
        ),
        "bad_form": (
            "This form could not be read (it is too large, or it was not sent by a "
            "browser). Please go back to the page and try again."
        ),
        "back": "Back to the page",
        "not_found": "There is nothing here.",
        "disputes_off": "Disputes are not taken on this page.",
    },
    "es": {
        "title": "Su cuenta",
        "for": "Cuenta de",
        "claim": "El mensaje por el que ha llegado aquí",
        "phase": "Fase",
        "sent_on": "Enviado el",
        "subject": "Asunto",
        "no_text": "El texto de este mensaje no está disponible.",
        "open_items": "Sus documentos pendientes",
        "no_items": "No tiene documentos pendientes. Gracias.",
        "number": "Documento",
        "kind": "Tipo",
        "issued": "Fecha de emisión",
        "due": "Vencimiento",
        "amount": "Importe",
        "balance": "Pendiente",
        "days_overdue": "Días vencido",
        "status": "Estado",
        "total": "Total pendiente",
        "invoice": "Factura",
        "instalment": "Plazo",
        "credit_note": "Abono",
        "overdue": "Vencido",
        "due_today": "Vence hoy",
        "not_due": "Por vencer",
        "disputed": "En disputa",
        "promised": "Pago prometido",
        "promised_for": "Pago prometido para el",
        "pay": "Pagar",
        "pay_button": "Pagar",
        "pay_note": "No se incluyen los documentos en disputa.",
        "bank": "Pagar por transferencia bancaria",
        "holder": "Titular",
        "iban": "IBAN",
        "bic": "BIC",
        "bank_name": "Banco",
        "reference": "Concepto a indicar",
        "read": "Confirme que ha leído este mensaje",
        "read_why": (
            "Abrir esta página no nos indica que haya leído el mensaje. Si lo ha leído, "
            "le rogamos que lo confirme con este botón."
        ),
        "read_button": "He leído este mensaje",
        "read_at": "Confirmó la lectura de este mensaje el",
        "done_read": "Gracias: queda registrada su lectura de este mensaje.",
        "dispute": "Disputar un documento",
        "dispute_why": "Si un documento no es correcto o no lo reconoce, indíquenos el motivo.",
        "item": "Documento",
        "reason": "Motivo",
        "attachment": "Adjunto (opcional: PDF, PNG o JPEG, como máximo {kb} KB)",
        "dispute_button": "Enviar la disputa",
        "done_dispute": (
            "Gracias: queda registrada su disputa. La revisaremos; mientras tanto no se le "
            "enviarán recordatorios de ese documento."
        ),
        "promise": "Prometer el pago",
        "promise_why": "Indíquenos cuándo pagará; no le enviaremos recordatorios antes.",
        "items_to_pay": "Documentos",
        "promise_date": "Pagaré como tarde el",
        "promise_limit": "como máximo dentro de {days} días",
        "note": "Nota (opcional)",
        "promise_button": "Enviar la promesa",
        "done_promise": "Gracias: queda registrada su promesa de pago.",
        "statement": "Descargar el extracto (PDF)",
        "earlier": "Mensajes anteriores",
        "no_earlier": "Ninguno.",
        "language": "Idioma",
        "err_reason": "Indique el motivo de la disputa.",
        "err_item": "Elija uno de sus documentos pendientes.",
        "err_items": "Elija al menos uno de sus documentos pendientes.",
        "err_date": "Indique como fecha el día en que pagará.",
        "err_past": "La fecha de pago no puede haber pasado ya.",
        "err_far": "La fecha de pago puede ser como máximo dentro de {days} días.",
        "err_big": "El adjunto es demasiado grande: como máximo {kb} KB.",
        "err_type": "El adjunto debe ser un archivo PDF, PNG o JPEG: {why}.",
        "err_refused": "No se ha podido registrar: {why}.",
        "err_form": "Hay un problema con el formulario:",
        "refused_title": "No se puede abrir este enlace",
        "invalid": (
            "Este enlace no es válido. Puede que se haya copiado incompleto o que se haya "
            "modificado. Ábralo de nuevo desde el mensaje que recibió."
        ),
        "expired": "Este enlace ha caducado. Solicite un enlace nuevo",
        "expired_contact": "escribiendo a",
        "forbidden": (
            "No se ha podido aceptar este formulario: no se envió desde esta página, o la "
            "página se ha abierto después en otra ventana. Vuelva a la página e inténtelo de "
            "nuevo."
        ),
        "bad_form": (
            "No se ha podido leer este formulario (es demasiado grande, o no lo ha enviado "
            "un navegador). Vuelva a la página e inténtelo de nuevo."
        ),
        "back": "Volver a la página",
        "not_found": "Aquí no hay nada.",
        "disputes_off": "En esta página no se admiten disputas.",
    },
}

LANGUAGES = tuple(PORTAL_LABELS)


def words(language: str) -> dict[str, str]:
    """The portal's words in ``language`` (English for a language it does not speak)."""
    return PORTAL_LABELS.get(language, PORTAL_LABELS["en"])
