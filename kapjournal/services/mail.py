"""Outgoing email (invitations). Sent only when KAPJOURNAL_SMTP_HOST is configured."""

from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from flask import current_app

log = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(current_app.config.get("SMTP_HOST"))


def send(*, to: str, subject: str, body: str) -> bool:
    """Send a plain-text email; False (and a log line without the address) if it failed."""
    cfg = current_app.config
    message = EmailMessage()
    message["From"] = cfg["SMTP_FROM"]  # not-ui (a header name)
    message["To"] = to  # not-ui (a header name)
    message["Subject"] = subject  # not-ui (a header name)
    message.set_content(body)
    try:
        with smtplib.SMTP(cfg["SMTP_HOST"], cfg["SMTP_PORT"], timeout=10) as smtp:
            if cfg["SMTP_STARTTLS"]:
                smtp.starttls()
            if cfg.get("SMTP_USER"):
                smtp.login(cfg["SMTP_USER"], cfg["SMTP_PASSWORD"] or "")
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        log.warning("email could not be sent: %s", type(exc).__name__)
        return False
    return True
