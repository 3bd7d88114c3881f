"""keymeter settings, read once from the environment (and .env, if present).

Local mode: with DATABASE_URL unset keymeter uses SQLite and a private Redis
under var/ and generates its own secrets there (see dashboard.localmode).
Otherwise it is a deployment: SECRET_KEY and VAULT_KEYS must be set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from dashboard import localmode

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

LOCAL_MODE = "DATABASE_URL" not in env
DEBUG = env.bool("DEBUG", default=LOCAL_MODE)


def _required(name: str, hint: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(f"{name} is not set. {hint}")
    return value


if LOCAL_MODE:
    SECRET_KEY = env.str("SECRET_KEY", default="") or localmode.secret_key()
    VAULT_KEYS = env.list("VAULT_KEYS", default=[]) or [localmode.vault_keys()]
else:
    SECRET_KEY = _required(
        "SECRET_KEY",
        "Set it to a long random string, e.g. `python -c 'import secrets; "
        "print(secrets.token_urlsafe(50))'`.",
    )
    VAULT_KEYS = [
        k.strip()
        for k in _required(
            "VAULT_KEYS",
            "Set it to one or more comma-separated Fernet keys, e.g. `python -c 'from "
            "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`.",
        ).split(",")
        if k.strip()
    ]


def _check_vault_keys(keys: list[str]) -> None:
    from cryptography.fernet import Fernet

    for i, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                f"VAULT_KEYS entry #{i} is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from None


_check_vault_keys(VAULT_KEYS)

ALLOWED_HOSTS = [
    h.strip() for h in env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
]
# How many reverse proxies in front of keymeter append to X-Forwarded-For (0 = trust
# none): the client address is that many entries from the right.
USE_X_FORWARDED_FOR = env.int("USE_X_FORWARDED_FOR", default=0)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "ninja",
    "accounts",
    "usage",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "dashboard.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.language.UserLanguageMiddleware",  # a logged-in user's saved language wins
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES: dict[str, dict[str, Any]]
if LOCAL_MODE:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(localmode.SQLITE_PATH),
            "OPTIONS": {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
else:
    DATABASES = {"default": {**env.db("DATABASE_URL")}}
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "accounts:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Redis: broker, cache, the gateway's hot counters and call stream.
REDIS_URL = env.str("REDIS_URL", default=localmode.REDIS_URL)


def _kombu_url(url: str) -> str:
    # redis-py says unix://, kombu says redis+socket:// for the same socket.
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "km",
    }
}

CELERY_BROKER_URL = _kombu_url(REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}
# Call stream → call log and rollups (usage/pipeline.py). A run still queued when the
# next is due is dropped (expires) instead of piling up behind a backlog.
CELERY_BEAT_SCHEDULE["flush-calls"] = {
    "task": "usage.tasks.flush_calls",
    "schedule": 2.0,
    "options": {"expires": 2.0},
}
# The provider's own daily usage and costs (usage/provider_import.py): yesterday and today.
CELERY_BEAT_SCHEDULE["import-provider-usage"] = {
    "task": "usage.tasks.import_provider_usage",
    "schedule": crontab(hour=1, minute=30),
}
# Budgets (usage/budgets.py): every flush checks the projects it touched; this is the
# safety net, plus health alerts, lost alert emails and the gateway's hard limits.
CELERY_BEAT_SCHEDULE["check-budgets"] = {
    "task": "usage.tasks.check_budgets",
    "schedule": 300.0,
    "options": {"expires": 300.0},
}
# Call records wait here (append-only) while Redis is unreachable; replayed by the flush.
SPOOL_DIR = Path(env.str("SPOOL_DIR", default=str(localmode.VAR_DIR / "spool")))

# Email: EMAIL_URL like smtp://user:pass@host:587 or smtp+tls://…; console in local mode.
if "EMAIL_URL" in env:
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = (
        "django.core.mail.backends.console.EmailBackend"
        if LOCAL_MODE
        else "django.core.mail.backends.smtp.EmailBackend"
    )
# Seconds before a hanging mail server counts as down (the alert email is retried).
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="keymeter <keymeter@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en"
LANGUAGES = [("en", _("English")), ("zh-hans", _("Simplified Chinese"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
# Number and date formats per language; dashboard/formats/ overrides Django's where
# keymeter wants otherwise (Chinese amounts with thousands separators).
FORMAT_MODULE_PATH = ["dashboard.formats"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
CELERY_TIMEZONE = TIME_ZONE
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Security. Cookies are marked secure unless DEBUG or SECURE_COOKIES=false
# (for an operator testing over plain http on a LAN).
SECURE_COOKIES = env.bool("SECURE_COOKIES", default=not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
LOGIN_THROTTLE_ATTEMPTS = env.int("LOGIN_THROTTLE_ATTEMPTS", default=5)
LOGIN_THROTTLE_WINDOW = env.int("LOGIN_THROTTLE_WINDOW", default=300)

# keymeter
DEFAULT_PROVIDER_BASE_URL = "https://api.openai.com/v1"
ROTATION_DAYS_DEFAULT = 90
# Key hygiene (accounts/rotation.py, validation.py, hygiene.py).
ROTATION_WARNING_DAYS = env.int("ROTATION_WARNING_DAYS", default=14)
ROTATION_GRACE_HOURS = env.float("ROTATION_GRACE_HOURS", default=24.0)
KEY_UNUSED_DAYS = env.int("KEY_UNUSED_DAYS", default=30)
KEY_VALIDATION_TIMEOUT = env.float("KEY_VALIDATION_TIMEOUT", default=10.0)
# Daily: stage keys for rotation and email once per stage; hourly: end grace periods.
CELERY_BEAT_SCHEDULE["check-rotation"] = {
    "task": "accounts.tasks.check_rotation",
    "schedule": crontab(hour=6, minute=0),
}
CELERY_BEAT_SCHEDULE["end-rotation-grace"] = {
    "task": "accounts.tasks.end_rotation_grace",
    "schedule": crontab(minute=5),
}
CELERY_BEAT_SCHEDULE["validate-keys"] = {
    "task": "accounts.tasks.validate_keys",
    "schedule": crontab(hour=5, minute=15),
}

# The gateway (usage/gateway.py). Timeouts in seconds; a long completion may stream
# for minutes, so only the gap between two reads is bounded.
GATEWAY_CONNECT_TIMEOUT = env.float("GATEWAY_CONNECT_TIMEOUT", default=10.0)
GATEWAY_READ_TIMEOUT = env.float("GATEWAY_READ_TIMEOUT", default=600.0)
GATEWAY_MAX_CONNECTIONS = env.int("GATEWAY_MAX_CONNECTIONS", default=1000)
GATEWAY_MAX_RETRIES = env.int("GATEWAY_MAX_RETRIES", default=2)
GATEWAY_RETRY_BASE = env.float("GATEWAY_RETRY_BASE", default=0.5)
GATEWAY_RETRY_MAX_WAIT = env.float("GATEWAY_RETRY_MAX_WAIT", default=8.0)
GATEWAY_MAX_BODY_BYTES = env.int("GATEWAY_MAX_BODY_BYTES", default=32 * 1024 * 1024)
GATEWAY_AUTH_CACHE_SECONDS = env.float("GATEWAY_AUTH_CACHE_SECONDS", default=5.0)
# A call that names no max_tokens is reserved against a hard budget as if it could
# produce this many output tokens.
GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS = env.int("GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS", default=4096)
# How long a project seen without a hard limit skips the limit check (a limit that is
# switched on applies after at most this long; raising or lowering one applies at once).
GATEWAY_BUDGET_CACHE_SECONDS = env.float("GATEWAY_BUDGET_CACHE_SECONDS", default=1.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
