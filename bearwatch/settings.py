"""Process settings from ``BEARWATCH_*`` environment variables.

Settings are built once at an entry point (CLI command, dashboard script) with
:func:`load_settings` and passed down; nothing here runs at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bearwatch.errors import ConfigError

MIN_SECRET_LENGTH = 32


class Settings(BaseSettings):
    """Where bearwatch keeps its data and how it reaches its database."""

    model_config = SettingsConfigDict(env_prefix="BEARWATCH_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("bearwatch-data"), description="frames, models, demo assets")
    database_url: str = Field(default="", description="SQLAlchemy URL; default SQLite under data_dir")
    log_level: str = Field(default="INFO")
    dashboard_port: int = Field(default=8501, ge=1, le=65535)
    dashboard_address: str = Field(default="127.0.0.1")
    dashboard_metrics_port: int | None = Field(default=None, ge=1, le=65535, description="serve the dashboard's /metrics here")
    # Every process's /metrics (--metrics-port, the dashboard's port above) listens here:
    # loopback unless a Prometheus on another machine must reach it (then 0.0.0.0 or one address).
    metrics_address: str = Field(default="127.0.0.1", description="address every process serves /metrics on")
    # Long enough for a ranger who watches the live wall through a night shift without
    # a click (its refreshes are not activity); shorten it where consoles are shared.
    dashboard_idle_timeout_s: float = Field(
        default=12 * 3600, gt=0, description="a dashboard session with no interaction for this long logs out"
    )
    # However active, a login ends this long after the password was typed (the cookie's lifetime).
    dashboard_session_lifetime_s: float = Field(
        default=7 * 24 * 3600, gt=0, description="a dashboard login ends this long after it began"
    )
    # Signs the dashboard's session cookie. Unset: a random key made once under data_dir
    # (dashboard.session_cookie); set it when several dashboard processes serve one address.
    dashboard_secret: SecretStr | None = Field(default=None, description="key that signs dashboard session cookies")
    camera_ca_file: Path | None = Field(default=None, description="PEM file of extra CAs / self-signed certificates for HTTPS cameras")
    # Alert webhooks (the shadow loop's outbox): a hung receiver holds only its own channel's senders.
    alert_senders: int = Field(default=4, ge=1, le=32, description="webhook requests in flight per alert channel")
    alert_timeout_s: float = Field(default=5.0, gt=0, le=25, description="a whole webhook request, connect to last byte")
    alert_retry_cap_s: float = Field(default=60.0, ge=1, le=3600, description="longest wait between retries of an alert")

    @field_validator("dashboard_secret")
    @classmethod
    def _long_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"use at least {MIN_SECRET_LENGTH} random characters (e.g. `openssl rand -hex 32`)")
        return secret

    @model_validator(mode="after")
    def _default_database(self) -> "Settings":
        if not self.database_url:
            url = f"sqlite:///{(self.data_dir / 'bearwatch.db').resolve()}"
            object.__setattr__(self, "database_url", url)
        return self

    @property
    def frames_dir(self) -> Path:
        return self.data_dir / "frames"

    @property
    def reports_dir(self) -> Path:
        """Backtest reports (`bearwatch backtest` writes here by default; the dashboard lists them)."""
        return self.data_dir / "reports"

    @property
    def demo_dir(self) -> Path:
        return self.data_dir / "demo"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: Any) -> Settings:
    """Read the environment now; explicit overrides (CLI options) win; pydantic validates their values."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"BEARWATCH_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from None
