"""Configuration: safe defaults, secrets only from KAPJOURNAL_* environment variables.

In development `make run` needs no set-up: on first start a secret key and a KEK are made
in `instance/dev-secrets.json`. Those are never accepted in production.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from . import crypto

DEV_KEK_ID = "dev"
DEV_SECRET_PREFIX = "dev-"  # noqa: S105  (a marker, not a secret)


class ConfigError(RuntimeError):
    """The app cannot start safely with this configuration."""


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"KAPJOURNAL_{name}")
    return value if value not in (None, "") else default


def _int_env(name: str, default: int) -> int:
    value = _env(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"KAPJOURNAL_{name} must be a whole number, not {value!r}") from None


def defaults(instance_path: Path) -> dict:
    """Every setting with its value from the environment or its default."""
    env = _env("ENV", "development")
    production = env == "production"
    return {
        "ENV_NAME": env,
        "PRODUCTION": production,
        "SECRET_KEY": _env("SECRET_KEY"),
        "KEKS": _env("KEKS"),
        "KEK_ACTIVE": _env("KEK_ACTIVE"),
        "DATABASE_URL": _env("DATABASE_URL", f"sqlite:///{instance_path / 'kapjournal.db'}"),
        "REDIS_URL": _env("REDIS_URL"),
        "BASE_URL": _env("BASE_URL"),
        "CLINIC_NAME": _env("CLINIC_NAME", "kapjournal"),
        "TIMEZONE": _env("TIMEZONE", "UTC"),
        "CRISIS_LINES": _env("CRISIS_LINES", ""),
        "SMTP_HOST": _env("SMTP_HOST"),
        "SMTP_PORT": _int_env("SMTP_PORT", 587),
        "SMTP_USER": _env("SMTP_USER"),
        "SMTP_PASSWORD": _env("SMTP_PASSWORD"),
        "SMTP_FROM": _env("SMTP_FROM", "kapjournal@localhost"),
        "SMTP_STARTTLS": _env("SMTP_STARTTLS", "true" if production else "false") == "true",
        "IDLE_MINUTES_THERAPIST": _int_env("IDLE_MINUTES_THERAPIST", 15),
        "IDLE_MINUTES": _int_env("IDLE_MINUTES", 30),
        "ABSOLUTE_HOURS": _int_env("ABSOLUTE_HOURS", 12),
        "INVITATION_DAYS": _int_env("INVITATION_DAYS", 7),
        "ARGON2_CONCURRENCY": _int_env("ARGON2_CONCURRENCY", 2),
        "KDF_PARAMS": crypto.PRODUCTION_KDF,
        "COOKIE_SECURE": _env("COOKIE_SECURE", "true" if production else "false") == "true",
        "LOGIN_LIMITS": _env("LOGIN_LIMITS", "10 per minute;50 per hour"),
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the login session
        "WTF_CSRF_SSL_STRICT": False,  # we send no Referer (see _security_headers)
        # Well above the 64 KB entry limit, so a too-long entry gets a 422 with its text kept.
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
        "MAX_FORM_MEMORY_SIZE": 2 * 1024 * 1024,
        # Web Push reminders (services/push.py); without both keys the option is hidden.
        "VAPID_PRIVATE_KEY": _env("VAPID_PRIVATE_KEY"),
        "VAPID_PUBLIC_KEY": _env("VAPID_PUBLIC_KEY"),
        "VAPID_SUBJECT": _env("VAPID_SUBJECT"),
    }


def _dev_secrets(instance_path: Path) -> dict:
    """Load or create the development secrets kept in instance/ (never for production)."""
    path = instance_path / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    instance_path.mkdir(parents=True, exist_ok=True)
    data = {
        "SECRET_KEY": DEV_SECRET_PREFIX + secrets.token_urlsafe(32),
        "KEKS": f"{DEV_KEK_ID}:{crypto.new_kek_text()}",
    }
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return data


def finalize(config: dict, instance_path: Path) -> None:
    """Fill development secrets, or refuse to start in production without real ones."""
    if config["PRODUCTION"]:
        _check_production(config)
    else:
        dev = None
        for key in ("SECRET_KEY", "KEKS"):
            if not config.get(key):
                dev = dev or _dev_secrets(instance_path)
                config[key] = dev[key]
    keks = crypto.parse_keks(config["KEKS"])
    if not keks:
        raise ConfigError("KAPJOURNAL_KEKS holds no key (format: id:base64key[,id:base64key])")
    active = config.get("KEK_ACTIVE") or list(keks)[-1]
    try:
        config["KEYRING"] = crypto.Keyring(keks, active)
    except ValueError as exc:
        raise ConfigError(f"KAPJOURNAL_KEKS: {exc}") from None
    secure = config["COOKIE_SECURE"]
    config["SESSION_COOKIE_NAME"] = "__Host-kj_csrf" if secure else "kj_csrf"
    config["LOGIN_COOKIE_NAME"] = "__Host-kj_session" if secure else "kj_session"
    config["SESSION_COOKIE_SECURE"] = secure
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"


def _check_production(config: dict) -> None:
    secret = config.get("SECRET_KEY") or ""
    if len(secret) < 32 or secret.startswith(DEV_SECRET_PREFIX):
        raise ConfigError(
            "KAPJOURNAL_ENV=production needs KAPJOURNAL_SECRET_KEY: at least 32 random "
            "characters, not a development value. Make one with: "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    spec = config.get("KEKS") or ""
    keks = crypto.parse_keks(spec) if spec else {}
    if not keks or DEV_KEK_ID in keks:
        raise ConfigError(
            "KAPJOURNAL_ENV=production needs KAPJOURNAL_KEKS (format id:base64key, e.g. "
            "k1:...), not a development value. Make one with: flask --app app keys new"
        )
