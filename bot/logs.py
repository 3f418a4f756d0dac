"""Logging that never prints a secret: tokens and the WebUI password are masked everywhere."""

from __future__ import annotations

import logging
import os
import re

from pythonjsonlogger.json import JsonFormatter

from bot.settings import Settings
from storage.urls import parse

# the Telegram token is part of every Bot API URL; mask any that slips through
_TOKEN_IN_URL = re.compile(r"/bot\d+:[A-Za-z0-9_-]{20,}")


class RedactingFilter(logging.Filter):
    """Replace known secrets in every record with ***."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def redact(self, text: str) -> str:
        """The text with every secret masked."""
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return _TOKEN_IN_URL.sub("/bot***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings."""
    values = []
    for secret in (settings.discord_token, settings.telegram_token, settings.webui_auth):
        if secret is not None:
            value = secret.get_secret_value()
            values.append(value)
            if ":" in value and secret is settings.webui_auth:
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
