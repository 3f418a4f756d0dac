"""Typed settings: environment variables override `.env`; every one is listed in `.env.example`."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from storage.urls import normalise


class Settings(BaseSettings):
    """Everything an operator can set. Passed explicitly; never a module-level global."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- backends ---
    webui_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:7860"]
    )
    webui_auth: SecretStr | None = None
    webui_timeout: float = 600.0
    webui_connect_timeout: float = 5.0
    progress_interval: float = 1.0
    stall_timeout: float = 180.0
    max_attempts: int = 3
    health_check_interval: float = 30.0
    # operator's names for the backends, in WEBUI_URLS order (chat users see these, or
    # "backend 1", "backend 2" …; never a host or port)
    webui_names: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # override_settings_restore_afterwards: other users of a shared WebUI keep their settings
    webui_restore_settings: bool = True
    backend_cooloff: float = Field(default=2.0, ge=0)
    backend_cooloff_max: float = Field(default=300.0, ge=0)
    catalogue_refresh_interval: float = Field(default=300.0, gt=0)

    # --- storage ---
    # empty: the SQLite file drawbridge.db in DATA_DIR (so a container sets only DATA_DIR=/data)
    database_url: str = ""
    data_dir: Path = Path("data")
    database_connect_timeout: float = 60.0
    db_retry_seconds: float = Field(default=60.0, ge=0)
    db_busy_timeout: float = Field(default=30.0, gt=0)
    # --- restarts and high availability ---
    # seconds before another process takes over the jobs of one that died (its lease)
    lease_seconds: float = Field(default=30.0, gt=0)
    # seconds a stopping process lets deliveries in flight finish before it hands back the rest
    shutdown_grace: float = Field(default=8.0, ge=0)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # postgres:// and postgresql:// (what hosting platforms inject) → the asyncpg driver
        return normalise(value) if value.strip() else ""

    @model_validator(mode="after")
    def _database_in_data_dir(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.data_dir / 'drawbridge.db'}"
        return self

    # --- platforms ---
    discord_token: SecretStr | None = None
    telegram_token: SecretStr | None = None
    admin_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- discord (adapters/discord) ---
    discord_api_base_url: str | None = None
    discord_allow_dms: bool = True
    discord_allowed_channels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    discord_nsfw_only: bool = False
    discord_spoiler_outside_nsfw: bool = False
    discord_edit_interval: float = 2.5
    discord_guild_ready_timeout: float = 2.0

    @field_validator("discord_allowed_channels", mode="before")
    @classmethod
    def _split_discord_channels(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("discord_api_base_url", mode="before")
    @classmethod
    def _discord_root(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().rstrip("/")
            if not value:
                return None
            if not value.startswith(("http://", "https://")):
                raise ValueError(
                    f"DISCORD_API_BASE_URL {value!r} must start with http:// or https://, "
                    "e.g. https://discord.com or http://127.0.0.1:8080"
                )
        return value

    # --- telegram (adapters/telegram) ---
    telegram_api_base_url: str = "https://api.telegram.org"
    telegram_webhook_url: str | None = None
    telegram_webhook_listen: str = "0.0.0.0:8443"
    telegram_webhook_secret: SecretStr | None = None
    telegram_allowed_chats: Annotated[list[str], NoDecode] = Field(default_factory=list)
    telegram_edit_interval: float = 4.0

    @field_validator("telegram_allowed_chats", mode="before")
    @classmethod
    def _split_telegram_chats(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("telegram_api_base_url")
    @classmethod
    def _telegram_root(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"TELEGRAM_API_BASE_URL {value!r} must start with http:// or https://, "
                "e.g. https://api.telegram.org or http://127.0.0.1:8081"
            )
        return value.rstrip("/")

    @field_validator("telegram_webhook_url", "telegram_webhook_secret", mode="before")
    @classmethod
    def _telegram_blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    # --- quotas ---
    daily_credits: int = 200
    admin_daily_credits: int = 2000
    quota_reset_time: time = time(0, 0)
    quota_timezone: str = "UTC"

    # --- queue and limits ---
    max_queued_per_user: int = 5
    presets_file: Path | None = None
    max_pixels: int = 1024 * 1024
    max_steps: int = 50
    max_images: int = 4
    max_prompt_length: int = 1000
    max_upload_bytes: int = 20 * 1024 * 1024
    # pictures decoded at once (each holds up to MAX_PIXELS of pixels): the upload memory bound
    max_concurrent_decodes: int = Field(default=2, ge=1)
    retention_days: float = 30.0
    # ledger rows of ended jobs older than this are folded into per-day sums; 0 keeps every row
    ledger_keep_days: float = Field(default=90.0, ge=0)

    log_level: str = "INFO"

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if value.strip().upper() not in levels:
            raise ValueError(f"{value!r} is not a log level; use one of {', '.join(levels)}")
        return value.strip().upper()

    @field_validator("webui_names", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")]
        return value

    # --- the platform edge (adapters/kit: outbox, input limits) ---
    delivery_retry_seconds: float = Field(default=600.0, ge=0)
    delivery_memory_mb: int = Field(default=64, ge=0)
    user_rate_limit: int = Field(default=20, ge=1)
    user_rate_period: float = Field(default=60.0, gt=0)
    # Telegram's published limits, as "messages/seconds"
    telegram_chat_limit: Annotated[tuple[int, float], NoDecode] = (1, 1.0)
    telegram_group_limit: Annotated[tuple[int, float], NoDecode] = (20, 60.0)
    telegram_global_limit: Annotated[tuple[int, float], NoDecode] = (30, 1.0)
    telegram_preview_after: float = 10.0

    # --- governance (bot/policy, bot/governor.py) ---
    policy_file: Path | None = None
    discord_admin_channel: str | None = None
    audit_retention_days: float = Field(default=365.0, gt=0)
    admin_notice_debounce: float = Field(default=60.0, ge=0)
    relax_mode: Literal["off", "flag", "auto"] = "off"
    nsfw_check: Literal["off", "spoiler", "block"] = "off"
    nsfw_threshold: float = Field(default=0.6, gt=0, le=1)

    @field_validator(
        "telegram_chat_limit", "telegram_group_limit", "telegram_global_limit", mode="before"
    )
    @classmethod
    def _rate(cls, value: object) -> object:
        if isinstance(value, str):
            count, slash, seconds = value.partition("/")
            try:
                parsed = (int(count), float(seconds))
            except ValueError:
                parsed = (0, 0.0)
            if not slash or parsed[0] < 1 or parsed[1] <= 0:
                raise ValueError(
                    f"{value!r} must be MESSAGES/SECONDS, e.g. 20/60 (20 messages a minute)"
                )
            return parsed
        return value

    @field_validator("webui_urls", "admin_ids", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webui_urls")
    @classmethod
    def _strip_slash(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("WEBUI_URLS needs at least one URL, e.g. http://127.0.0.1:7860")
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"WEBUI_URLS entry {url!r} must start with http:// or https://")
        return [url.rstrip("/") for url in value]

    @field_validator("policy_file", "discord_admin_channel", mode="before")
    @classmethod
    def _governance_blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("webui_auth", "discord_token", "telegram_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def webui_credentials(self) -> tuple[str, str] | None:
        """WEBUI_AUTH split into (user, password); the password may contain ':'."""
        if self.webui_auth is None:
            return None
        user, _, password = self.webui_auth.get_secret_value().partition(":")
        return user, password

    def is_admin(self, user_key: str) -> bool:
        """Whether "platform:id" is listed in ADMIN_IDS."""
        return user_key in self.admin_ids

    def allowance_for(self, user_key: str) -> int:
        """Daily credits for this user."""
        return self.admin_daily_credits if self.is_admin(user_key) else self.daily_credits

    # --- operating it (bot/monitor.py, bot/logs.py) ---
    # host:port of /healthz, /readyz and /metrics; empty or "off": no HTTP server
    http_listen: str = "127.0.0.1:8080"
    # "text" (one line per record) or "json" (one JSON object per line, for log shippers)
    log_format: str = "text"

    @field_validator("http_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("", "off"):
            return ""
        split_listen(value)
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        value = value.strip().lower() or "text"
        if value not in ("text", "json"):
            raise ValueError(f"LOG_FORMAT {value!r} must be text or json")
        return value

    def http_address(self) -> tuple[str, int] | None:
        """HTTP_LISTEN as (host, port); None when it is off."""
        return split_listen(self.http_listen) if self.http_listen else None

    def database_options(self) -> dict[str, float]:
        """Keyword arguments for storage.db.Database beside the URL."""
        return {"retry_seconds": self.db_retry_seconds, "busy_timeout": self.db_busy_timeout}

    # --- create more (issue 15): hires and LoRAs per request ---
    max_hr_scale: float = Field(default=2.0, ge=1.0, le=4.0)
    max_loras: int = Field(default=5, ge=0)


def split_listen(value: str) -> tuple[str, int]:
    """ "host:port" (IPv6 as "[::]:8080") as (host, port); ValueError saying what to write."""
    host, colon, port = value.rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(
            f"HTTP_LISTEN {value!r} must be HOST:PORT, e.g. 127.0.0.1:8080 (0.0.0.0:8080 in a "
            "container), or off"
        )
    return host, int(port)
