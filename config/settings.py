"""Django settings, read from the environment through ``config.env``.

With no environment at all this is the embedded default: SQLite, local files under
``./var/``, an in-process worker and the bundled model. Setting ``DATABASE_URL``,
``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND`` and ``S3_*`` moves the same code onto
PostgreSQL, RabbitMQ, Redis and an S3 endpoint.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import Env, database_from_url

env = Env()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env.get_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()

EMBEDDED = not env.is_set("DATABASE_URL")
DEBUG = env.get_bool("DJANGO_DEBUG", default=EMBEDDED)

_DEV_SECRET = "embedded-default-insecure-secret-key-do-not-use-in-production-0123456789"
SECRET_KEY = env.get_str("DJANGO_SECRET_KEY", _DEV_SECRET if DEBUG else None)
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")

ALLOWED_HOSTS = env.get_list(
    "DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS = env.get_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pgtrigger",
    "governance.audit",
    "governance.registry",
    "governance.captions",
    "governance.approvals",
    "governance.integrations",
    "generation",
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "governance.audit.middleware.AuditContextMiddleware",
    "config.middleware.RolesMemoMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.middleware.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "django.template.context_processors.i18n",
                "web.context.user_roles",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------
if EMBEDDED:
    # SQLite cannot create its folder; a fresh clone has no ./var yet.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
        }
    }
else:
    DATABASES = {"default": database_from_url(env.get_str("DATABASE_URL"))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache ----------------------------------------------------------------------------
_redis_cache = env.get_url("CACHE_URL", None, ("redis", "rediss"))
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _redis_cache,
            # Keeps deployments (or test runs) sharing one Redis database apart: throttle
            # histories, role memos and cached verdicts of one never count in another.
            "KEY_PREFIX": env.get_str("CACHE_KEY_PREFIX", ""),
        }
        if _redis_cache
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- i18n -----------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ja", "日本語")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- object storage -------------------------------------------------------------------
# Outputs go to S3 when a bucket is configured, else to content-addressed local files.
S3_BUCKET = env.get_str("S3_BUCKET", "") or None
OBJECT_STORE_BACKEND = env.get_choice(
    "OBJECT_STORE_BACKEND", "s3" if S3_BUCKET else "local", ("s3", "local")
)
if OBJECT_STORE_BACKEND == "s3" and not S3_BUCKET:
    raise ImproperlyConfigured("OBJECT_STORE_BACKEND=s3 needs S3_BUCKET.")
S3_ENDPOINT_URL = env.get_url("S3_ENDPOINT_URL", None, ("http", "https"))
S3_REGION = env.get_str("S3_REGION", "us-east-1")
S3_ACCESS_KEY_ID = env.get_str("S3_ACCESS_KEY_ID", "") or None
S3_SECRET_ACCESS_KEY = env.get_str("S3_SECRET_ACCESS_KEY", "") or None
S3_PRESIGN_SECONDS = env.get_int("S3_PRESIGN_SECONDS", 300, min_value=1, max_value=7 * 24 * 3600)
S3_CONNECT_TIMEOUT = env.get_float("S3_CONNECT_TIMEOUT", 3.0, min_value=0.1)
S3_READ_TIMEOUT = env.get_float("S3_READ_TIMEOUT", 20.0, min_value=0.1)
S3_MAX_ATTEMPTS = env.get_int("S3_MAX_ATTEMPTS", 2, min_value=1, max_value=10)
LOCAL_OBJECT_ROOT = VAR_DIR / "objects"

STORAGES = {
    "default": (
        {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": S3_BUCKET,
                "endpoint_url": S3_ENDPOINT_URL,
                "region_name": S3_REGION,
                "access_key": S3_ACCESS_KEY_ID,
                "secret_key": S3_SECRET_ACCESS_KEY,
                "location": "uploads",
                "file_overwrite": False,
            },
        }
        if OBJECT_STORE_BACKEND == "s3"
        else {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": VAR_DIR / "uploads"},
        }
    ),
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- audit trail ----------------------------------------------------------------------
# The chain's HMAC key lives outside the database, so whoever can write the database cannot
# forge a valid chain. Required when DEBUG is off; the embedded default uses a fixed dev key.
_DEV_AUDIT_KEY = "embedded-default-audit-hmac-key-not-for-production"
AUDIT_HMAC_KEY = env.get_str("AUDIT_HMAC_KEY", _DEV_AUDIT_KEY if DEBUG else None)
if AUDIT_HMAC_KEY and len(AUDIT_HMAC_KEY) < 32:
    raise ImproperlyConfigured("AUDIT_HMAC_KEY must be at least 32 characters.")
# Chain anchors: a separate object-lock bucket on S3, else write-once files under VAR_DIR.
AUDIT_ANCHOR_BACKEND = env.get_choice("AUDIT_ANCHOR_BACKEND", OBJECT_STORE_BACKEND, ("s3", "local"))
AUDIT_ANCHOR_BUCKET = (
    env.get_str("AUDIT_ANCHOR_BUCKET", f"{S3_BUCKET}-audit-anchors" if S3_BUCKET else "") or None
)
if AUDIT_ANCHOR_BACKEND == "s3" and not AUDIT_ANCHOR_BUCKET:
    raise ImproperlyConfigured("AUDIT_ANCHOR_BACKEND=s3 needs AUDIT_ANCHOR_BUCKET or S3_BUCKET.")
AUDIT_ANCHOR_RETENTION_DAYS = env.get_int(
    "AUDIT_ANCHOR_RETENTION_DAYS", 2557, min_value=1, max_value=36500
)
AUDIT_ANCHOR_INTERVAL = env.get_int("AUDIT_ANCHOR_INTERVAL", 3600, min_value=60)
AUDIT_ANCHOR_ROOT = VAR_DIR / "audit-anchors"

# --- provenance, retention, replay ---------------------------------------------------------
# Every stored PNG carries a record signed with an Ed25519 key derived from this secret
# (generation/provenance.py). Required when DEBUG is off; the embedded default uses a dev key.
_DEV_PROVENANCE_KEY = "embedded-default-provenance-key-not-for-production"
PROVENANCE_SIGNING_KEY = env.get_str(
    "PROVENANCE_SIGNING_KEY", _DEV_PROVENANCE_KEY if DEBUG else None
)
if len(PROVENANCE_SIGNING_KEY) < 32:
    raise ImproperlyConfigured("PROVENANCE_SIGNING_KEY must be at least 32 characters.")
# Optional C2PA Content Credentials: PEM paths of an ES256 certificate chain (signer first,
# root last) and its key (manage.py make_c2pa_certificate writes a private pair).
PROVENANCE_C2PA_CERT = env.get_str("PROVENANCE_C2PA_CERT", "")
PROVENANCE_C2PA_KEY = env.get_str("PROVENANCE_C2PA_KEY", "")
if bool(PROVENANCE_C2PA_CERT) != bool(PROVENANCE_C2PA_KEY):
    raise ImproperlyConfigured("Set both PROVENANCE_C2PA_CERT and PROVENANCE_C2PA_KEY, or neither.")
# Rejected outputs lose their image this many days after the rejection (legal holds excepted).
RETENTION_REJECTED_DAYS = env.get_int("RETENTION_REJECTED_DAYS", 30, min_value=0)
RETENTION_PURGE_INTERVAL = env.get_int("RETENTION_PURGE_INTERVAL", 3600, min_value=60)
# The beat schedule replays this many random outputs every REPLAY_INTERVAL seconds.
REPLAY_SAMPLE_SIZE = env.get_int("REPLAY_SAMPLE_SIZE", 3, min_value=0, max_value=1000)
REPLAY_INTERVAL = env.get_int("REPLAY_INTERVAL", 86400, min_value=60)

# --- Celery and the generation worker -------------------------------------------------
CELERY_BROKER_URL = env.get_url("CELERY_BROKER_URL", None, ("amqp", "amqps", "redis", "memory"))
CELERY_RESULT_BACKEND = env.get_url("CELERY_RESULT_BACKEND", None, ("redis", "rediss"))
# "celery" dispatches to the gpu queue; "inprocess" runs jobs on a thread of the web process.
GENERATION_WORKER = env.get_choice(
    "GENERATION_WORKER", "celery" if CELERY_BROKER_URL else "inprocess", ("celery", "inprocess")
)
if GENERATION_WORKER == "celery" and not CELERY_BROKER_URL:
    raise ImproperlyConfigured("GENERATION_WORKER=celery needs CELERY_BROKER_URL.")
GENERATION_QUEUE = env.get_str("GENERATION_QUEUE", "gpu")
GENERATION_DEVICE = env.get_str("GENERATION_DEVICE", "cpu")
GENERATION_JOB_TIME_LIMIT = env.get_int("GENERATION_JOB_TIME_LIMIT", 1800, min_value=10)
# A running job whose heartbeat is older than this is taken to have lost its worker.
GENERATION_HEARTBEAT_TIMEOUT = env.get_int("GENERATION_HEARTBEAT_TIMEOUT", 120, min_value=2)
# A queued job not picked up for this long is dispatched again by the sweeper.
GENERATION_REDISPATCH_AFTER = env.get_int("GENERATION_REDISPATCH_AFTER", 60, min_value=1)
GENERATION_SWEEP_INTERVAL = env.get_int("GENERATION_SWEEP_INTERVAL", 30, min_value=1)
GENERATION_MAX_ATTEMPTS = env.get_int("GENERATION_MAX_ATTEMPTS", 5, min_value=1)
GENERATION_MODEL_CACHE_DIR = VAR_DIR / "model-cache"
GENERATION_MAX_BATCH = env.get_int("GENERATION_MAX_BATCH", 8, min_value=1, max_value=256)
GENERATION_DEFAULT_MODEL = env.get_str("GENERATION_DEFAULT_MODEL", "demo")
GENERATION_DEFAULT_ALIAS = env.get_str("GENERATION_DEFAULT_ALIAS", "production")

# RabbitMQ cancels a consumer that holds an unacknowledged message longer than its
# consumer_timeout (docker/rabbitmq.conf); with acks_late that must exceed the longest job.
RABBITMQ_CONSUMER_TIMEOUT_MS = env.get_int("RABBITMQ_CONSUMER_TIMEOUT_MS", 7_200_000, min_value=1)
if GENERATION_JOB_TIME_LIMIT * 1000 >= RABBITMQ_CONSUMER_TIMEOUT_MS:
    raise ImproperlyConfigured(
        "GENERATION_JOB_TIME_LIMIT must stay below RabbitMQ's consumer_timeout "
        "(RABBITMQ_CONSUMER_TIMEOUT_MS), or long jobs are redelivered while still running."
    )

# --- REST API -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "web.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "config.api_errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        "submission": env.get_str("THROTTLE_SUBMISSION", "120/min"),
        # Sign-in attempts per client address and username (web page and token endpoint).
        "login": env.get_str("THROTTLE_LOGIN", "10/min"),
    },
    "NON_FIELD_ERRORS_KEY": "non_field_errors",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "VAR-CLIP governed generation API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
DATA_UPLOAD_MAX_MEMORY_SIZE = env.get_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1_048_576, min_value=1024)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.get_str("LOG_LEVEL", "INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}},
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- webhooks and quotas (governance/integrations) ------------------------------------------
WEBHOOK_TIMEOUT = env.get_float("WEBHOOK_TIMEOUT", 5.0, min_value=0.1)
WEBHOOK_MAX_ATTEMPTS = env.get_int("WEBHOOK_MAX_ATTEMPTS", 6, min_value=1, max_value=50)
# Seconds before the first retry; each later retry waits twice as long (capped at an hour).
WEBHOOK_BACKOFF_SECONDS = env.get_int("WEBHOOK_BACKOFF_SECONDS", 10, min_value=1)
# Images a team may request per day (in TIME_ZONE) unless it has its own quota; 0 = no limit.
QUOTA_DEFAULT_DAILY_IMAGES = env.get_int("QUOTA_DEFAULT_DAILY_IMAGES", 0, min_value=0)

# --- transport security -------------------------------------------------------------
# On by default whenever DEBUG is off (behind TLS); the test runner serves plain HTTP on
# loopback and turns the redirect and the secure-only cookies off explicitly.
_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.get_bool("DJANGO_SECURE_SSL_REDIRECT", _SECURE)
SESSION_COOKIE_SECURE = env.get_bool("DJANGO_SECURE_COOKIES", _SECURE)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.get_int("DJANGO_HSTS_SECONDS", 31_536_000 if _SECURE else 0, min_value=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
# The TLS-terminating proxy says which scheme the client used.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
