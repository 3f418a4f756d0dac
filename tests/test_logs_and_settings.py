"""Secrets never reach logs; settings parse as operators write them; quota days."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from bot.logs import RedactingFilter, secrets_of, setup_logging
from bot.quota import next_reset, quota_day
from bot.settings import Settings

TOKEN = "123456789:AAHfake-telegram-token-value_xyz"


@pytest.fixture(autouse=True)
def _restore_logging():
    """setup_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {
        n: logging.getLogger(n).level
        for n in ("httpx", "httpcore", "apscheduler.executors.default", "alembic")
    }
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_secrets_are_masked_in_messages_args_and_tracebacks(capsys):
    settings = Settings(
        _env_file=None,
        telegram_token=TOKEN,
        webui_auth="bot:hunter2secret",
        discord_token="discord.secret.token",
    )
    setup_logging(settings)
    log = logging.getLogger("drawbridge.test")
    log.warning("POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    log.warning("auth was %s and %s", "bot:hunter2secret", "discord.secret.token")
    try:
        raise RuntimeError(f"failed with password hunter2secret at /bot{TOKEN}/sendPhoto")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert TOKEN not in err and "hunter2secret" not in err and "discord.secret.token" not in err
    assert "/bot***/getUpdates" in err and "boom" in err


def test_token_shaped_urls_are_masked_even_when_unknown():
    f = RedactingFilter([])
    assert f.redact(f"GET /bot{TOKEN}/getMe") == "GET /bot***/getMe"


def test_httpx_request_logs_are_quieted():
    setup_logging(Settings(_env_file=None))
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING


def test_secrets_of_includes_the_bare_webui_password():
    settings = Settings(_env_file=None, webui_auth="user:pa:ss")
    assert "pa:ss" in secrets_of(settings)
    assert settings.webui_credentials() == ("user", "pa:ss")


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("WEBUI_URLS", "http://a:7860/, http://b:7861")
    monkeypatch.setenv("ADMIN_IDS", "telegram:1, discord:2")
    monkeypatch.setenv("QUOTA_RESET_TIME", "04:30")
    monkeypatch.setenv("TELEGRAM_TOKEN", "")
    s = Settings(_env_file=None)
    assert s.webui_urls == ["http://a:7860", "http://b:7861"]
    assert s.is_admin("discord:2") and not s.is_admin("discord:3")
    assert s.allowance_for("telegram:1") == s.admin_daily_credits
    assert s.quota_reset_time == time(4, 30)
    assert s.telegram_token is None


def test_env_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    env = tmp_path / ".env"
    env.write_text("MAX_STEPS=40\nDAILY_CREDITS=7\n")
    monkeypatch.setenv("DAILY_CREDITS", "9")
    s = Settings(_env_file=env)
    assert (s.max_steps, s.daily_credits) == (40, 9)


def test_bad_url_is_refused():
    with pytest.raises(ValidationError, match="must start with http"):
        Settings(_env_file=None, webui_urls="localhost:7860")


def test_quota_day_starts_at_the_reset_time_in_the_zone():
    tz = ZoneInfo("Asia/Shanghai")
    reset = time(4, 0)
    # 2026-03-10 19:30 UTC is 03:30 on the 11th in Shanghai: still the 10th's quota day
    assert quota_day(datetime(2026, 3, 10, 19, 30, tzinfo=UTC), reset, tz) == "2026-03-10"
    assert quota_day(datetime(2026, 3, 10, 20, 30, tzinfo=UTC), reset, tz) == "2026-03-11"
    nxt = next_reset(datetime(2026, 3, 10, 19, 30, tzinfo=UTC), reset, tz)
    assert nxt.isoformat() == "2026-03-11T04:00:00+08:00"


def _formatted(record: logging.LogRecord, redactor: RedactingFilter) -> str:
    redactor.filter(record)
    return logging.Formatter("%(message)s %(extra_field)s").format(record)


@pytest.mark.parametrize(
    ("msg", "args", "secret"),
    [
        ("payload %s", ({"d": {"token": "aW50ZXJhY3Rpb246MTIzOjQ1Ng.xyz"}},), "aW50ZXJhY3Rpb246"),
        ("json %s", ('{"token": "abc.def-ghi_jkl"}',), "abc.def-ghi_jkl"),
        ("params %s", ({"url": "https://x", "secret_token": "hook-s3cret-value"},), "hook-s3cret"),
        ("bytes %r", (b'{"password": "pw-in-bytes-123"}',), "pw-in-bytes-123"),
        ("url %s", ("postgresql://bot:hunter22@db:5432/x",), "hunter22"),
        ("header %s", ("Authorization: Basic dXNlcjpwYXNzd29yZA==",), "dXNlcjpwYXNzd29yZA"),
        ("header %s", ("Authorization: Bot MTAxMjM0NTY3ODkw.abcdef",), "MTAxMjM0NTY3ODkw"),
        ("bad format %d", ("not a number",), None),
    ],
)
def test_the_root_redaction_masks_secrets_by_their_shape(msg, args, secret) -> None:
    redactor = RedactingFilter([])
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, msg, args, None)
    # what a JSON formatter prints from `extra=`: the same value, beside the message
    record.extra_field = (msg % args) if secret is not None else ""
    text = _formatted(record, redactor)
    if secret is not None:
        assert secret not in text and "***" in text
    else:
        assert "not a number" in text  # a broken record is still logged, not raised


def test_a_secret_learned_at_run_time_is_masked_from_then_on(capsys) -> None:
    from bot.logs import learn_secret

    setup_logging(Settings(_env_file=None))
    learn_secret("generated-webhook-secret")
    logging.getLogger("drawbridge.test").warning("secret is generated-webhook-secret")
    assert "generated-webhook-secret" not in capsys.readouterr().err


def test_log_level_is_checked_with_the_levels_to_use() -> None:
    with pytest.raises(ValidationError, match="use one of DEBUG, INFO"):
        Settings(_env_file=None, log_level="LOUD")
    assert Settings(_env_file=None, log_level="debug").log_level == "DEBUG"
