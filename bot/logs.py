"""Logging that never prints a secret: one redaction point on the root handler masks every
secret drawbridge holds (settings) or receives (interaction tokens, by pattern) in every record.

The mask runs as a handler Filter that rewrites the record itself (message, args, exception
and stack text, string extras) before any Formatter sees it, so a plain-text or a JSON
formatter on that handler prints the same clean record.
"""

from __future__ import annotations

import logging
import os
import re

from pythonjsonlogger.json import JsonFormatter

from bot.settings import Settings
from storage.urls import parse

MASK = "***"

# the Telegram token is part of every Bot API URL; mask any that slips through
_TOKEN_IN_URL = re.compile(r"/bot\d+:[A-Za-z0-9_-]{20,}")
# a Discord interaction token is base64 of "interaction:<id>:<secret>"; it arrives per event
# (gateway payloads, webhook URLs), so it is masked by its shape wherever it appears
_INTERACTION_TOKEN = re.compile(r"aW50ZXJhY3Rpb246[A-Za-z0-9_\-.=]*")
# dict reprs and JSON: "token": "…", 'secret_token': '…', "password": "…", "authorization": …
_SECRET_FIELD = re.compile(
    r"""(?P<key>["']?[\w-]*(?:token|password|secret|authorization)["']?\s*[:=]\s*)"""
    r"""(?P<quote>["'])(?P<value>(?:(?!(?P=quote)).){1,4000})(?P=quote)""",
    re.IGNORECASE,
)
# headers as text: "Authorization: Bot abc", "Basic dXNlcjpwYXNz"
_AUTH_HEADER = re.compile(r"\b(Bot|Basic|Bearer)\s+[A-Za-z0-9._\-+/=]{8,}")
# a URL's password: scheme://user:password@host
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^@\s/]+@")
# attributes every LogRecord has; the rest are `extra=` fields a JSON formatter would print
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Replace known secrets and secret-shaped values in every record with ***."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets: list[str] = []
        for secret in secrets:
            self.learn(secret)

    def learn(self, secret: str | None) -> None:
        """Mask `secret` from now on (a value that arrives at run time)."""
        if secret and len(secret) >= 4 and secret not in self.secrets:
            self.secrets.append(secret)
            # longest first: a token is masked whole before its secret half is looked at
            self.secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        """The text with every secret masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _TOKEN_IN_URL.sub("/bot" + MASK, text)
        text = _INTERACTION_TOKEN.sub(MASK, text)
        text = _SECRET_FIELD.sub(_mask_field, text)
        text = _AUTH_HEADER.sub(r"\1 " + MASK, text)
        return _URL_PASSWORD.sub(r"\1" + MASK + "@", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what is there, masked
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


def _mask_field(match: re.Match[str]) -> str:
    quote = match.group("quote")
    return f"{match.group('key')}{quote}{MASK}{quote}"


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings."""
    values = []
    for secret in (
        settings.discord_token,
        settings.telegram_token,
        settings.webui_auth,
        settings.telegram_webhook_secret,
    ):
        if secret is not None:
            value = secret.get_secret_value()
            values.append(value)
            if ":" in value and secret is settings.webui_auth:
                values.append(value.split(":", 1)[1])
            if ":" in value and secret is settings.telegram_token:
                values.append(value.split(":", 1)[1])
    # a driver's error may quote the connection string; PGPASSWORD is the same secret
    database_password = parse(settings.database_url).password
    for extra in (database_password, os.environ.get("PGPASSWORD")):
        if extra:
            values.append(str(extra))
    return values


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def formatter_for(log_format: str) -> logging.Formatter:
    """LOG_FORMAT's formatter: text lines, or one JSON object per line (for log shippers).
    Either formats records the handler's RedactingFilter has already masked."""
    if log_format == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
    return logging.Formatter(TEXT_FORMAT)


def learn_secret(secret: str | None) -> None:
    """Tell the root handler's redaction about a secret made at run time (e.g. a generated
    webhook secret); a no-op before logging is set up."""
    for handler in logging.getLogger().handlers:
        for candidate in handler.filters:
            if isinstance(candidate, RedactingFilter):
                candidate.learn(secret)


def setup_logging(settings: Settings) -> RedactingFilter:
    """Configure the root logger once; quiet the libraries that log URLs."""
    redactor = RedactingFilter(secrets_of(settings))
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(settings.log_format))
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # httpx logs every request URL at INFO, and Telegram URLs carry the token
    for noisy in ("httpx", "httpcore", "apscheduler.executors.default", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
