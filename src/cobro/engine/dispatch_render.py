"""Rendering a recipient's message for each of its channels: the email in full (the phase's
attachment, the receipt or statement PDF, the inline logo, List-Unsubscribe), the short text
of SMS and push and the spoken text of a call, each addressed with its Message-ID."""

from __future__ import annotations

import hashlib
from typing import Any

from babel import Locale, UnknownLocaleError

from cobro.channels.base import Attachment, Outgoing
from cobro.domain.model import Recipient
from cobro.engine.dispatch_jobs import Job, Person, Route
from cobro.engine.dispatch_state import DispatchState
from cobro.engine.messages import MessageSpec, load_attachment
from cobro.engine.optouts import make_unsubscribe_token, unsubscribe_url
from cobro.render.logo import LOGO_CID


class Rendering(DispatchState):
    """The part of ``Dispatcher`` that renders each recipient's message per channel."""

    def _language_and_locale(self, code: str) -> tuple[str, str]:
        """(template language, formatting locale) for a stored ``es`` / ``es_ES`` code."""
        found = self._locales.get(code)
        if found is None:
            try:
                loc = Locale.parse(code)
            except (ValueError, TypeError, UnknownLocaleError):
                loc = Locale.parse(self.config.company.locale)
            if loc.language == self._company_lang and not loc.territory:
                found = (loc.language, self.config.company.locale)
            else:
                found = (loc.language, str(loc))
            self._locales[code] = found
        return found

    def _statement(self, job: Job, person: Person) -> Attachment:
        """The debtor's statement of account on the claim's date, as a PDF in ``person``'s
        language (rendered once per language and claim)."""
        from cobro.render.receipt import html_pdf
        from cobro.render.statement import statement_filename, statement_html, statement_language

        assert job.statement is not None
        language, locale = statement_language(self.config, person.language or job.customer_language)
        found = job.statement_files.get(language)
        if found is None:
            html = statement_html(
                self.config,
                job.statement,
                language,
                locale,
                templates=self.templates,
                logo=self._logo,
            )
            found = job.statement_files[language] = Attachment(
                statement_filename(job.customer_external_id, job.occurrence_on, language),
                "application/pdf",
                html_pdf(html),
            )
        return found

    def _attachments(self, spec: MessageSpec) -> tuple[Attachment, ...]:
        if spec.attachment is None:
            return ()
        found = self._files.get(spec.attachment)
        if found is None:
            found = self._files[spec.attachment] = load_attachment(self.files_root, spec.attachment)
        return (found,)

    def _receipt(self, job: Job, notice: dict[str, Any], language: str, locale: str) -> Attachment:
        from cobro.render.receipt import receipt_pdf

        data = receipt_pdf(
            self.config.company,
            job.customer_name,
            job.customer_external_id,
            notice,
            language,
            locale,
            templates=self.templates,
            logo=self._logo,
        )
        return Attachment(
            f"recibo-{notice['charge']}.pdf"
            if language == "es"
            else f"receipt-{notice['charge']}.pdf",
            "application/pdf",
            data,
        )

    def _route(
        self,
        job: Job,
        spec: MessageSpec,
        person: Person,
        routes: list[tuple[str, list[tuple[str, dict[str, str]]]]],
        context: dict[str, Any],
        notice: dict[str, Any],
        attachments: tuple[Attachment, ...],
    ) -> Route:
        """Render ``person``'s message for each of their channels (full for email, the short
        line for SMS and push) and address it."""
        company = self.config.company
        language, locale = self._language_and_locale(
            person.language or job.customer_language or self._company_lang
        )
        full = short = spoken = None
        options: list[tuple[str, list[Outgoing]]] = []
        voice_cfg = self.config.channels.voice
        for channel, found in routes:
            if channel == "email":
                full = full or self.templates.render(spec.template, language, context)
                rendered = full
                files = attachments
                inline = (self._logo.inline(),) if self._logo and LOGO_CID in full.html else ()
                if spec.receipt_pdf:
                    files = (*attachments, self._receipt(job, notice, language, locale))
                if spec.statement_pdf and job.statement is not None:
                    files = (*files, self._statement(job, person))
            elif channel == "voice":
                spoken = spoken or self.templates.render_voice(spec.template, language, context)
                rendered, files, inline = spoken, (), ()
            else:
                short = short or self.templates.render_short(spec.template, language, context)
                rendered, files, inline = short, (), ()
            outs = []
            headers = {"X-Cobro-Claim": f"{company.id}/{job.outbox_id}/{spec.key}"}
            if (
                channel == "email"
                and spec.unsubscribable
                and self.config.channels.email.unsubscribe
                and person.role is Recipient.DEBTOR
            ):
                url = unsubscribe_url(
                    company.server_url,
                    make_unsubscribe_token(
                        self.secret, company.id, job.customer_external_id, job.outbox_id, "email"
                    ),
                )
                headers["List-Unsubscribe"] = f"<{url}>"
                headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
            if channel == "voice" and voice_cfg is not None:
                speech, voice = voice_cfg.speech(language)
                found = [
                    (a, {**m, "language": language, "speech": speech, "voice": voice or ""})
                    for a, m in found
                ]
            for address, meta in found:
                digest = hashlib.sha256(address.lower().encode()).hexdigest()[:12]
                outs.append(
                    Outgoing(
                        outbox_id=job.outbox_id,
                        address=address,
                        recipient_name=person.name,
                        subject=rendered.subject,
                        text=rendered.text,
                        html=rendered.html,
                        message_id=(
                            f"<cobro.{company.id}.{job.outbox_id}.{digest}@{self.sender_domain}>"
                        ),
                        headers=headers,
                        attachments=files,
                        meta=meta,
                        url=context["pay_url"],
                        inline=inline,
                    )
                )
            options.append((channel, outs))
        return Route(person, options)
