"""Process settings, read once from the environment.

Every variable is documented in the README. A missing or malformed value stops start-up with
one line naming the variable; secret values are never part of any message or log line.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/fleet"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_GITHUB_API_URL = "https://api.github.com"
DEFAULT_QUEUE = "fleet"
# A stored delivery GUID is what makes a redelivery a no-op, and GitHub redelivers for up to
# 3 days (7 on Enterprise Server): deliveries are kept at least that long.
MIN_RETENTION_DAYS = 7


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable and never its value."""


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    github_api_url: str = DEFAULT_GITHUB_API_URL
    app_id: int | str | None = None
    private_key: str | None = field(default=None, repr=False)
    webhook_secret: str | None = field(default=None, repr=False)
    api_token: str | None = field(default=None, repr=False)
    queue_name: str = DEFAULT_QUEUE
    log_level: str = "INFO"
    log_format: str = "json"
    bot_login: str | None = None
    writes_per_minute: int = 80
    writes_per_hour: int = 500
    sweep_interval: float = 15.0
    cors_origins: tuple[str, ...] = ()
    sandbox: bool = False
    # Days finished deliveries, evidence and progress snapshots are kept (jobs/retention.py).
    retention_days: int = 30

    @property
    def has_app_credentials(self) -> bool:
        return self.app_id is not None and self.private_key is not None

    def require_app(self) -> None:
        """Raise unless the settings allow calling GitHub as the App."""
        if self.app_id is None:
            raise SettingsError("GITHUB_APP_ID is not set (the App's numeric id or client id)")
        if self.private_key is None:
            raise SettingsError("GITHUB_APP_PRIVATE_KEY or GITHUB_APP_PRIVATE_KEY_PATH is not set")


def _int(env: dict[str, str], name: str, default: int | None, minimum: int = 0) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d+", raw) or int(raw) < minimum:
        raise SettingsError(f"{name} must be a whole number >= {minimum}")
    return int(raw)


def _app_id(raw: str) -> int | str | None:
    """The App's numeric id, or its client id (``Iv1.…``/``Iv23…``), which GitHub recommends as the JWT issuer."""
    if not raw:
        return None
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if re.fullmatch(r"Iv[A-Za-z0-9.]{4,40}", raw):
        return raw
    raise SettingsError("GITHUB_APP_ID must be the App's numeric id or its client id (Iv…)")


def _url(env: dict[str, str], name: str, default: str, schemes: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip() or default
    if not raw.startswith(schemes):
        # Only the scheme is echoed: URLs can carry passwords.
        raise SettingsError(f"{name} must start with one of {', '.join(schemes)}")
    return raw


def _private_key(env: dict[str, str]) -> str | None:
    pem = env.get("GITHUB_APP_PRIVATE_KEY", "").strip()
    path = env.get("GITHUB_APP_PRIVATE_KEY_PATH", "").strip()
    if pem and path:
        raise SettingsError("set only one of GITHUB_APP_PRIVATE_KEY and GITHUB_APP_PRIVATE_KEY_PATH")
    if path:
        try:
            pem = Path(path).read_text()
        except OSError as exc:
            raise SettingsError(f"GITHUB_APP_PRIVATE_KEY_PATH cannot be read ({exc.strerror})") from None
    if not pem:
        return None
    # Env files often carry the PEM on one line with literal \n.
    pem = pem.replace("\\n", "\n").strip() + "\n"
    name = "GITHUB_APP_PRIVATE_KEY_PATH" if path else "GITHUB_APP_PRIVATE_KEY"
    if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
        raise SettingsError(f"{name} does not hold a PEM private key")
    _check_rsa_key(pem, name)
    return pem


def _check_rsa_key(pem: str, name: str) -> None:
    """Parse the key now: a PEM frame around garbage would otherwise pass here and fail later, on
    every token request, as an obscure signing error. GitHub Apps sign with RSA keys."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        raise SettingsError(f"{name} holds an encrypted private key; use the unencrypted PEM GitHub "
                            "generated for the App") from None
    except (ValueError, UnsupportedAlgorithm):  # the key's text is never echoed
        raise SettingsError(f"{name} holds a PEM block that is not a readable private key; download a new "
                            "private key from the App's settings page") from None
    if not isinstance(key, RSAPrivateKey):
        raise SettingsError(f"{name} holds a private key that is not RSA; GitHub Apps sign with RSA keys")


def _stderr_is_terminal() -> bool:
    try:
        return os.isatty(2)
    except OSError:
        return False


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: ``os.environ``)."""
    env = dict(os.environ if env is None else env)
    app_id = _app_id(env.get("GITHUB_APP_ID", "").strip())
    private_key = _private_key(env)
    secret = env.get("GITHUB_WEBHOOK_SECRET") or None
    origins = tuple(o.strip() for o in env.get("FLEET_CORS_ORIGINS", "").split(",") if o.strip())
    level = env.get("LOG_LEVEL", "INFO").upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError("LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR")
    # Unset: readable lines on a terminal (JSON flooded the sandbox's, scrolling its token away),
    # JSON for log collectors everywhere else.
    log_format = (env.get("FLEET_LOG_FORMAT") or ("console" if _stderr_is_terminal() else "json")).lower()
    if log_format not in {"json", "console"}:
        raise SettingsError("FLEET_LOG_FORMAT must be json or console")
    queue = env.get("FLEET_QUEUE", DEFAULT_QUEUE).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", queue):
        raise SettingsError("FLEET_QUEUE must be 1-64 letters, digits or _.:-")
    return Settings(
        database_url=_url(env, "DATABASE_URL", DEFAULT_DATABASE_URL, ("postgresql://", "postgres://")),
        redis_url=_url(env, "REDIS_URL", DEFAULT_REDIS_URL, ("redis://", "rediss://", "unix://")),
        github_api_url=_url(env, "GITHUB_API_URL", DEFAULT_GITHUB_API_URL, ("http://", "https://")).rstrip("/"),
        app_id=app_id,
        private_key=private_key,
        webhook_secret=secret,
        api_token=env.get("FLEET_API_TOKEN") or None,
        queue_name=queue,
        log_level=level,
        log_format=log_format,
        bot_login=env.get("FLEET_BOT_LOGIN") or None,
        writes_per_minute=_int(env, "FLEET_WRITES_PER_MINUTE", 80, minimum=1),  # type: ignore[arg-type]
        writes_per_hour=_int(env, "FLEET_WRITES_PER_HOUR", 500, minimum=1),  # type: ignore[arg-type]
        sweep_interval=float(_int(env, "FLEET_SWEEP_INTERVAL", 15, minimum=1)),  # type: ignore[arg-type]
        cors_origins=origins,
        sandbox=env.get("FLEET_SANDBOX", "") == "1",
        retention_days=_int(env, "FLEET_RETENTION_DAYS", 30, minimum=MIN_RETENTION_DAYS),  # type: ignore[arg-type]
    )
