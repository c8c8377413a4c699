"""Voxanne settings: one module, configured by environment variables (see README)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def envbool(name: str, default: bool) -> bool:
    """The variable as a bool; unset or empty gives `default`, anything but a true/false
    spelling stops start-up (a typo must not turn a protection off)."""
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}."
    )


def envint(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}.") from None


def envstr(name: str, default: str = "") -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


DEBUG = envbool("DJANGO_DEBUG", False)

SECRET_KEY = envstr("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is not 1 (it signs sessions and JWTs)."
        )
    SECRET_KEY = "dev-only-insecure-secret-key-for-local-debug-runs-0123456789"

ALLOWED_HOSTS = [
    h.strip() for h in envstr("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "voxanne",
    "billing",
    "voice",
    "onboarding",
    "abandonment",
]

MIDDLEWARE = [
    "voxanne.observability.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "voxanne.errors.ApiErrorMiddleware",
    "voxanne.tenancy.TenantMiddleware",
]

ROOT_URLCONF = "voxanne.urls"
WSGI_APPLICATION = "voxanne.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Postgres (never SQLite: the locking is the point) -------------------------------------
_database_url = envstr("DATABASE_URL")
if not _database_url:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. Use `make run` / `make test`, which start an embedded Postgres."
    )
DATABASES = {
    "default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL.")
# Bind parameters on the server (psycopg's Cursor, not Django's default ClientCursor), and
# prepare a statement once psycopg has sent it DATABASE_PREPARE_THRESHOLD (5) times on a
# connection; 0 prepares none (Django's default: for a pooler in transaction mode that cannot
# keep them, such as PgBouncer before 1.21). The hot SQL (billing/services.py,
# voice/services.py) is written and tested this way. Measured 2026-12-01, in-process, one
# connection, 3,400 Vapi webhooks, alternating runs: PostgreSQL's CPU 2.37-2.73 -> 1.17-1.39
# ms a request and Python's 2.94-3.35 -> 2.57-3.09 ms, planning being most of the look-ups'
# time (EXPLAIN ANALYZE of the call's owner: 0.36 ms planning, 0.07 ms executing). A rollback
# makes psycopg forget every prepared statement of its connection, so the hot paths do not
# roll back on the way they usually go (billing/inbox.py). A string of several statements (a
# migration's RunSQL) returns several results, and psycopg never prepares one of those.
_prepare_after = envint("DATABASE_PREPARE_THRESHOLD", 5)
DATABASES["default"].setdefault("OPTIONS", {}).update(
    server_side_binding=True, prepare_threshold=_prepare_after if _prepare_after > 0 else None
)
if envstr("TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": envstr("TEST_DATABASE_NAME")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "voxanne.User"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Django's default list, with its PBKDF2 computed on low-priority threads (voxanne/hashers.py:
# a burst of sign-ups must not queue every other request). Same algorithm name, so it replaces
# the stock PBKDF2 hasher rather than sitting beside it.
PASSWORD_HASHERS = [
    "voxanne.hashers.BackgroundPBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# gunicorn serves the admin's static files itself (no collectstatic step, no extra server).
WHITENOISE_USE_FINDERS = True

DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

# --- Redis: Celery broker and cache --------------------------------------------------------
REDIS_URL = envstr("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": envstr("CACHE_KEY_PREFIX", "voxanne"),
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}

# --- API -----------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["voxanne.auth.OrgJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["voxanne.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "voxanne.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    # A `?format=` query parameter must not pick a renderer (nor 404 the request).
    "URL_FORMAT_OVERRIDE": None,
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=envint("JWT_ACCESS_MINUTES", 15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=envint("JWT_REFRESH_DAYS", 7)),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_FIELD": "id",
    "USER_ID_CLAIM": "user_id",
    "LEEWAY": 0,
}

# Per client address, for signup and token endpoints. None turns throttling off.
AUTH_THROTTLE_RATE: str | None = envstr("AUTH_THROTTLE_RATE", "20/minute") or None

SPECTACULAR_SETTINGS = {
    "TITLE": "Voxanne API",
    "DESCRIPTION": 'Clinic onboarding, wallet and phone provisioning. Every error is {"error": str}.',
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Email: Django's own EMAIL_* settings, each from the variable of the same name ----------
if "EMAIL_URL" in os.environ:
    raise ImproperlyConfigured(
        "EMAIL_URL is no longer read: set EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, "
        "EMAIL_HOST_PASSWORD, EMAIL_USE_TLS / EMAIL_USE_SSL instead (see README)."
    )
EMAIL_HOST = envstr("EMAIL_HOST")
# Without a mail server, emails are printed (a dev box); with one, sent over SMTP.
EMAIL_BACKEND = envstr(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if EMAIL_HOST
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = envint("EMAIL_PORT", 587)
EMAIL_HOST_USER = envstr("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = envstr("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)  # STARTTLS
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)  # TLS from the first byte (port 465)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT_SECONDS", 10)
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "Voxanne <hello@localhost>")
APP_BASE_URL = envstr("APP_BASE_URL", "http://127.0.0.1:8000")

# Shard tasks one scheduled pass fans out to (ideally the worker's concurrency).
ABANDONMENT_SHARDS = envint("ABANDONMENT_SHARDS", 2)
# Fixed, not read from the environment (nobody should turn them in production; tests override
# them through pytest-django's `settings`): orgs per candidate query; emails per claim (also
# the most a worker killed mid-send can leave unconfirmed); when a claim of a dead run is
# settled; how long an unsubscribe link works.
ABANDONMENT_BATCH_SIZE = 1000
ABANDONMENT_SEND_CHUNK = 50
ABANDONMENT_CLAIM_TIMEOUT_SECONDS = 3600
ABANDONMENT_UNSUBSCRIBE_MAX_AGE_DAYS = 365

# --- Secrets stored in the database (provider tokens) --------------------------------------
FIELD_ENCRYPTION_KEY = envstr("FIELD_ENCRYPTION_KEY")
if not FIELD_ENCRYPTION_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must be set when DJANGO_DEBUG is not 1.")
    FIELD_ENCRYPTION_KEY = "ZGV2LW9ubHktZmllbGQtZW5jcnlwdGlvbi1rZXktMDA="  # dev/test only

# --- Telephony -----------------------------------------------------------------------------
TWILIO_MASTER_ACCOUNT_SID = envstr("TWILIO_MASTER_ACCOUNT_SID")
TWILIO_MASTER_AUTH_TOKEN = envstr("TWILIO_MASTER_AUTH_TOKEN")
TWILIO_API_BASE_URL = envstr("TWILIO_API_BASE_URL", "https://api.twilio.com")
VAPI_PRIVATE_KEY = envstr("VAPI_PRIVATE_KEY")
VAPI_BASE_URL = envstr("VAPI_BASE_URL", "https://api.vapi.ai")
# Vapi sends this in the X-Vapi-Secret header of every webhook; unset: every webhook is refused.
VAPI_WEBHOOK_SECRET = envstr("VAPI_WEBHOOK_SECRET")
PROVISION_COUNTRY = envstr("PROVISION_COUNTRY", "US")
PROVIDER_TIMEOUT_SECONDS = envint("PROVIDER_TIMEOUT_SECONDS", 15)
# An attempt whose driver has not reported for this long is the reconciler's to finish or undo
# (fixed: a lease, not a knob).
PROVISIONING_STUCK_AFTER_SECONDS = 300

# --- Payments (Stripe Checkout top-ups) ---------------------------------------------------
STRIPE_SECRET_KEY = envstr("STRIPE_SECRET_KEY")
# A comma list: during a secret rotation both the old and the new secret verify.
STRIPE_WEBHOOK_SECRET = envstr("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = envstr("STRIPE_API_BASE", "https://api.stripe.com")
WALLET_MIN_TOPUP_PENCE = envint("WALLET_MIN_TOPUP_PENCE", 2500)
WALLET_MAX_TOPUP_PENCE = envint("WALLET_MAX_TOPUP_PENCE", 100000)
# Where Stripe sends the clinic back. `{TOPUP_ID}` is replaced by the top-up's id (and Stripe
# replaces `{CHECKOUT_SESSION_ID}`). The default is this server's own return page.
TOPUP_SUCCESS_URL = envstr("TOPUP_SUCCESS_URL", f"{APP_BASE_URL}/billing/topup/{{TOPUP_ID}}")
TOPUP_CANCEL_URL = envstr(
    "TOPUP_CANCEL_URL", f"{APP_BASE_URL}/billing/topup/{{TOPUP_ID}}?cancelled=1"
)

# --- Recurring money (issue 17): auto-recharge, and the number's monthly rental -----------
# At most this many auto-recharge attempts per clinic in any 24 hours (paid or failed).
AUTO_RECHARGE_MAX_PER_DAY = envint("AUTO_RECHARGE_MAX_PER_DAY", 3)
# What a number costs each month after the first (the provisioning charge pays the first).
NUMBER_MONTHLY_PENCE = envint("NUMBER_MONTHLY_PENCE", 1000)
# Days after paid_until that an unpaid number is kept (renewal retried daily) before release.
NUMBER_GRACE_DAYS = envint("NUMBER_GRACE_DAYS", 7)

# --- Calls: what a minute costs, how far a call that started funded may run into debt, and
# the longest call we let Vapi hold.
CALL_RATE_PENCE_PER_MINUTE = envint("CALL_RATE_PENCE_PER_MINUTE", 56)
DEBT_LIMIT_PENCE = envint("DEBT_LIMIT_PENCE", 500)
MAX_CALL_SECONDS = envint("MAX_CALL_SECONDS", 600)
# How far back each reconcile_calls pass lists Vapi's calls.
RECONCILE_CALLS_LOOKBACK_HOURS = envint("RECONCILE_CALLS_LOOKBACK_HOURS", 24)

# --- Production hardening ------------------------------------------------------------------
SESSION_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", not DEBUG)
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_SSL_REDIRECT = envbool("DJANGO_SSL_REDIRECT", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Sign-in protection and proxies --------------------------------------------------------
# How many proxies in front of gunicorn append to X-Forwarded-For (and set X-Forwarded-Proto).
# 0: the connection's address is the client's and forwarded headers are ignored, since a client
# can write them.
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_COUNT > 0 else None
# Sign-in attempts per email address, from any address. None turns it off.
AUTH_EMAIL_THROTTLE_RATE: str | None = envstr("AUTH_EMAIL_THROTTLE_RATE", "10/hour") or None

# Tokens die with the password: each carries a digest of the password hash it was issued
# under (checked on every request and refresh), and a refresh token works once (rotated, the
# old one blacklisted). `manage.py flushexpiredtokens` prunes the blacklist tables.
INSTALLED_APPS += ["rest_framework_simplejwt.token_blacklist"]
SIMPLE_JWT |= {
    "CHECK_REVOKE_TOKEN": True,
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
}

# Admin sign-in lockout (django-axes, counts kept in the database: no cache needed).
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
AUTHENTICATION_BACKENDS = [
    "voxanne.lockout.AdminLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "voxanne.lockout.AdminLockoutHandler"
AXES_ONLY_ADMIN_SITE = True
AXES_FAILURE_LIMIT = envint("ADMIN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("ADMIN_LOCKOUT_MINUTES", 30))
# The pair, not the account alone: locking a support account for everyone would let anyone
# keep support out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "voxanne.auth.client_address"
AXES_USERNAME_CALLABLE = "voxanne.lockout.lockout_username"

# The API docs page loads Swagger UI from our static files, not a CDN.
INSTALLED_APPS += ["drf_spectacular_sidecar"]
SPECTACULAR_SETTINGS |= {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}


# --- Logging: one JSON line per event in production ----------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "voxanne.observability.RequestIdFilter"},
        "redact": {"()": "voxanne.observability.RedactFilter"},
    },
    "formatters": {
        "json": {"()": "voxanne.observability.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["request_id", "redact"],
            "formatter": envstr("LOG_FORMAT", "plain" if DEBUG else "json"),
        }
    },
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.request": {"level": "ERROR", "propagate": True},
        "django.server": {"level": "WARNING", "propagate": True},
    },
}
