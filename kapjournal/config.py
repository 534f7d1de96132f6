"""Configuration: safe defaults, secrets only from KAPJOURNAL_* environment variables.

In development `make run` needs no set-up: on first start a secret key and a KEK are made
in `instance/dev-secrets.json`. Those are never accepted in production.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from . import crypto

log = logging.getLogger(__name__)

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
        # How many reverse proxies in front of the app add X-Forwarded-For (and -Proto); 0
        # ignores those headers, which anyone can send.
        "TRUSTED_PROXIES": _int_env("TRUSTED_PROXIES", 0),
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
        # Tests only: let reminders go to a push service on this machine. Ignored unless
        # TESTING and not PRODUCTION (services/push.py).
        "PUSH_TEST_LOCAL_SERVICE": False,
        # --- after the session: capture and seal (helper CAPTURE) ---
        # Hours after a ketamine session's start in which what a patient writes is held for
        # them alone (the cooling-off seal), and the capture mode is offered; 0 turns both off.
        "COOLING_OFF_HOURS": _int_env("COOLING_OFF_HOURS", 12),
        "MEMO_MAX_BYTES": _int_env("MEMO_MAX_BYTES", 5 * 1024 * 1024),
        # --- session day (helper DAY): the clinic's instructions for a ketamine session day,
        # one per line (services/session_day.py has the defaults), and when the ride home is
        # asked to come, in minutes after the session starts.
        "SESSION_DAY_INSTRUCTIONS": _env("SESSION_DAY_INSTRUCTIONS", ""),
        "SESSION_DAY_PICKUP_MINUTES": _int_env("SESSION_DAY_PICKUP_MINUTES", 150),
    }


def _dev_secrets(instance_path: Path) -> dict:
    """Load or create the development secrets kept in instance/ (never for production)."""
    path = instance_path / "dev-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    private_folder(instance_path)
    data = {
        "SECRET_KEY": DEV_SECRET_PREFIX + secrets.token_urlsafe(32),
        "KEKS": f"{DEV_KEK_ID}:{crypto.new_kek_text()}",
    }
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return data


def private_folder(path: Path) -> None:
    """Make `path` (and missing parents) if needed; a folder made here is for this user only
    (0700): it holds secrets or the database."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)  # whatever the umask


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
    if config.get("TRUSTED_PROXIES", 0) < 0:
        raise ConfigError("KAPJOURNAL_TRUSTED_PROXIES must be 0 or more")
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
    if not config.get("REDIS_URL"):
        raise ConfigError(
            "KAPJOURNAL_ENV=production needs KAPJOURNAL_REDIS_URL (e.g. "
            "redis://127.0.0.1:6379/0): the limits on login and password attempts must be "
            "counted in one place for every worker and server, not by each on its own."
        )
    base = urlsplit(config.get("BASE_URL") or "")
    if base.scheme not in ("http", "https") or not base.netloc:
        raise ConfigError(
            "KAPJOURNAL_ENV=production needs KAPJOURNAL_BASE_URL, the address people open "
            "(e.g. https://journal.example.org): invitation and confirmation links are made "
            "from it, never from the Host header a request brings."
        )
    if not config.get("SMTP_HOST"):
        log.warning(
            "KAPJOURNAL_SMTP_HOST is not set: without email, registering from an invitation "
            "link tells whether an address already has an account here. Configure SMTP."
        )
