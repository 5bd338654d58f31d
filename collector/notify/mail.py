"""E-mail over SMTP: one thread per call, a stable Message-ID for every notification.

The call's open mail is the thread's root (`<runwatch-call-12-…@example.org>`); every later mail
about the call answers it (In-Reply-To, References), so a mail client shows one thread per
problem. A notification sent again after a crash is the same message, byte for byte: same
Message-ID, same Date, same text. See docs/notifications.md on what that means for duplicates.
"""

from __future__ import annotations

import email.utils
import logging
import smtplib
import socket
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from typing import TypeVar

from collector.notify.config import EmailChannelConfig
from collector.notify.message import Message
from collector.sinks.contract import Problem, SinkError
from collector.sinks.transport import Redactor

log = logging.getLogger(__name__)
_T = TypeVar("_T")
# Headers unfolded up to RFC 5322's hard limit: Python folds a long subject right after
# `Subject:`, which some clients show with a leading space.
_POLICY = SMTP.clone(max_line_length=998)


def thread_id(message: Message, domain: str) -> str:
    """The Message-ID of the call's open mail: the root every later mail answers."""
    return f"<runwatch-call-{message.call_id}-{message.fingerprint[:16]}@{domain}>"


def message_id(message: Message, domain: str) -> str:
    """This notification's own Message-ID, the same at every attempt."""
    if message.event == "digest":
        return f"<runwatch-digest-{message.key}@{domain}>"
    if message.first:
        return thread_id(message, domain)
    return f"<runwatch-call-{message.call_id}-{message.fingerprint[:16]}-{message.key}@{domain}>"


def build(message: Message, config: EmailChannelConfig) -> EmailMessage:
    """The mail for one notification."""
    mail = EmailMessage(policy=_POLICY)
    mail["From"] = config.from_
    mail["To"] = ", ".join(config.to)
    mail["Subject"] = message.subject
    mail["Date"] = email.utils.formatdate(message.at, usegmt=True)
    mail["Message-ID"] = message_id(message, config.id_domain)
    if not message.first:
        root = thread_id(message, config.id_domain)
        mail["In-Reply-To"] = root
        mail["References"] = root
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to it
    if message.call_id:
        mail["X-Runwatch-Call"] = str(message.call_id)
    mail["X-Runwatch-Event"] = message.event
    mail.set_content(message.body)
    return mail


def _tls_context(config: EmailChannelConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=config.smtp.ca_file)
    if not config.smtp.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _by_code(code: int) -> bool:
    """SMTP replies: 4xx passes (try again), 5xx lasts."""
    return 400 <= code < 500


class EmailChannel:
    """Hand one mail per notification to the configured SMTP server."""

    def __init__(self, name: str, config: EmailChannelConfig) -> None:
        self.name = name
        self._config = config

    def send(self, message: Message) -> None:
        mail = build(message, self._config)
        refused = self._session(lambda client: client.send_message(mail))
        if refused:
            # The others have it: sending again would give them a second copy.
            log.warning(
                "%s: mail %s not accepted for %s",
                self.name,
                mail["Message-ID"],
                ", ".join(f"{rcpt} ({code})" for rcpt, (code, _) in refused.items()),
            )

    def check(self) -> list[Problem]:
        """The self-check (`runwatch outbox check-sinks`, and at start): connect, TLS, log in
        and leave, sending nothing; each problem with its fix."""
        smtp = self._config.smtp
        try:
            self._session(lambda client: client.noop())
        except SinkError as exc:
            doing = f"SMTP {smtp.host}:{smtp.effective_port}"
            if exc.status in (530, 534, 535, 538):
                fix = "check smtp.username and the secret in smtp.password"
            elif exc.retryable:
                fix = "check smtp.host, smtp.port, smtp.security and the network path"
            elif "certificate" in str(exc):
                fix = "give the CA that signed the server's certificate in smtp.ca_file"
            else:
                fix = "check the smtp settings against the mail server's"
            return [Problem(f"{doing}: {exc}", fix)]
        return []

    def _session(self, action: Callable[[smtplib.SMTP], _T]) -> _T:
        """Connect, secure, log in, do `action` and leave; any failure as a SinkError (the
        password redacted), retryable for what may pass: 4xx, timeouts, a server away."""
        redact = Redactor()
        smtp = self._config.smtp
        where = f"{self.name}: SMTP {smtp.host}:{smtp.effective_port}"
        try:
            password = smtp.password.read() if smtp.password is not None else None
            if password:
                redact.add(password)
            return self._transmit(action, password)
        except SinkError as exc:
            raise SinkError(redact(f"{self.name}: {exc}"), retryable=exc.retryable) from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            said = "; ".join(
                f"{rcpt}: {code} {_text(text)}" for rcpt, (code, text) in exc.recipients.items()
            )
            raise SinkError(
                redact(f"{where} refused every recipient: {said}"),
                retryable=any(_by_code(c) for c in codes),
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise SinkError(
                redact(f"{where} answered {exc.smtp_code} {_text(exc.smtp_error)}"),
                retryable=_by_code(exc.smtp_code),
                status=exc.smtp_code,
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise SinkError(redact(f"{where}: {exc}"), retryable=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise SinkError(
                redact(f"{where}: the server's certificate is not trusted: {exc.verify_message}"),
                retryable=False,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise SinkError(
                redact(f"{where}: {type(exc).__name__}: {exc}"), retryable=True
            ) from None

    def _transmit(self, action: Callable[[smtplib.SMTP], _T], password: str | None) -> _T:
        smtp = self._config.smtp
        timeout = float(smtp.timeout)
        local = socket.gethostname()  # not getfqdn(): no reverse lookup that could hang
        client: smtplib.SMTP
        if smtp.security == "tls":
            client = smtplib.SMTP_SSL(
                smtp.host,
                smtp.effective_port,
                local,
                timeout=timeout,
                context=_tls_context(self._config),
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.effective_port, local, timeout=timeout)
        try:
            client.ehlo()
            if smtp.security == "starttls":
                if not client.has_extn("starttls"):
                    raise SinkError(
                        f"SMTP {smtp.host}:{smtp.effective_port} does not offer STARTTLS "
                        "(security: starttls refuses to send in the clear)",
                        retryable=False,
                    )
                client.starttls(context=_tls_context(self._config))
                client.ehlo()
            if smtp.username is not None and password is not None:
                client.login(smtp.username, password)
            return action(client)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:200]
