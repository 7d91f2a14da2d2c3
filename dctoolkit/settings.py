"""Every setting of dctoolkit, read from the environment once, with laptop defaults.

Only this module reads the environment (a `.env` file in the project root is
read too).  A bad value stops start-up with a message that names the variable
and the values it accepts.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

# --- private by default ---------------------------------------------------
# Every server and node process reads these settings before it creates a
# file (manage.py, worker_entry.py, gunicorn's wsgi.py, celery -A dctoolkit),
# so this is the one place that makes what they create, the database,
# var/, storage, outputs, logs, scratch, readable by their owner only.
os.umask(0o077)

BASE_DIR = Path(__file__).resolve().parent.parent
try:
    load_dotenv(BASE_DIR / ".env", override=False)
except PermissionError:
    pass  # another Unix user's .env: its settings and secrets are not ours (cli.py refuses --user)

VAR_DIR = Path(os.environ.get("DCT_VAR", BASE_DIR / "var")).resolve()


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r}: use 1 or 0 (also true/false, yes/no, on/off).")


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: use a whole number, such as {default}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r}: use a whole number of at least {minimum}.")
    return value


def _env_duration(name: str, default: str) -> float:
    from dctoolkit.jobs.units import UnitError, parse_duration

    raw = os.environ.get(name) or default
    try:
        return parse_duration(raw)
    except UnitError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r}: {exc}") from None


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if DCT_SERVER:
        # The remote command line signs nothing and touches nothing local but
        # the files it is asked to write: a key for this process alone.
        return secrets.token_urlsafe(50)
    if PRODUCTION:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: with DCT_PRODUCTION=1 put a long random SECRET_KEY in the environment or .env "
            "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    # Development: keep one random key per checkout, readable by its owner only.
    path = VAR_DIR / "secret_key"
    try:
        if path.exists():
            return path.read_text().strip()
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except PermissionError:
        # Another Unix user's checkout: no key, so this process signs nothing
        # (Django refuses an empty SECRET_KEY where one is needed) and may not
        # act as another user (cli.py).
        return ""
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


# DCT_PRODUCTION=1 turns on the safe production defaults (the docker-compose
# file and the systemd units set it).
PRODUCTION = _env_bool("DCT_PRODUCTION", False)
DEBUG = _env_bool("DEBUG", False)
# Remote command line (the API client); unset means the CLI talks to the database.
DCT_SERVER = os.environ.get("DCT_SERVER", "").rstrip("/")
DCT_TOKEN = os.environ.get("DCT_TOKEN", "")
SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h.strip()
]

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
    "dctoolkit.accounts",
    "dctoolkit.nodes",
    "dctoolkit.jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dctoolkit.urls"
WSGI_APPLICATION = "dctoolkit.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "dctoolkit" / "templates"],
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

# --- database -------------------------------------------------------------
_default_db = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
try:
    # Connections are kept (and checked before reuse): a node opens one per
    # job slot, the scheduler one, and opening a connection costs more than
    # the few statements a short job needs.
    _db = dj_database_url.parse(
        os.environ.get("DATABASE_URL") or _default_db, conn_max_age=300, conn_health_checks=True
    )
except Exception as exc:  # dj_database_url raises plain ValueError/KeyError
    raise ImproperlyConfigured(
        f"DATABASE_URL: {exc}; use sqlite:///PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB."
    ) from None
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take SQLite's write lock at BEGIN, so two
    # scheduler passes serialise instead of failing on lock upgrade; WAL lets
    # readers (the portal, the CLI) go on while a node writes.
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    if not DCT_SERVER:  # a remote command never opens the database, and makes no folder for it
        Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
if _db["ENGINE"] == "django.db.backends.postgresql":
    # Across a network, a dead link must turn into an error within seconds
    # (not TCP's minutes), so a cut-off node notices and fences itself.
    _db.setdefault("OPTIONS", {}).update(
        {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
         "keepalives_count": 2, "tcp_user_timeout": 5000}
    )  # fmt: skip
if _db["ENGINE"] == "django.db.backends.mysql":
    # PyMySQL (pure Python) stands in for mysqlclient, which needs a C toolchain
    # and the MariaDB headers on every node.
    import pymysql

    pymysql.install_as_MySQLdb()
    _db.setdefault("OPTIONS", {}).update({"charset": "utf8mb4", "isolation_level": "read committed"})
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 8}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "dctoolkit" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

SESSION_COOKIE_SECURE = PRODUCTION and _env_bool("DCT_HTTPS", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- REST API -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes anonymous requests 401, not 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "dctoolkit API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and ReDoc from the drf-spectacular-sidecar package: no asset from the internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # <id:job_id> in the URLs (jobs/ids.py): a whole number a database can hold.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
}
# Biggest upload (a submission and its files, all together) the API takes; above it answers 413.
DCT_MAX_UPLOAD_MB = _env_int("DCT_MAX_UPLOAD_MB", 2048, minimum=1)
# Files in one upload (Django's default of 100 is low for a submission with many inputs).
DATA_UPLOAD_MAX_NUMBER_FILES = 1000


# --- Celery / Redis -------------------------------------------------------
def _redis_url() -> str:
    # Unset: the private Redis that `./dct up` started, which leaves its
    # address in var/redis_url; else the usual local port.
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"]
    # (It holds the private Redis's password, so it is mode 0600: another Unix
    # user of this checkout cannot read it and gets the usual local port.)
    try:
        return (VAR_DIR / "redis_url").read_text().strip()
    except OSError:
        return "redis://127.0.0.1:6379/0"


REDIS_URL = _redis_url()
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT = "dctoolkit.broker:Transport"  # Redis, one client per channel (broker.py)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# No acknowledgement bookkeeping in Redis: kombu's ack emulation costs every
# message a Redis client and a two-command pipeline (a sixth of a node's own
# Python time for short jobs), and re-delivers only after a visibility timeout.
# The database already makes delivery reliable: a job whose message was lost
# (Redis restarted, a node died holding it) stays `dispatched` and the
# scheduler sends it again after RESEND_AFTER_SECONDS, or requeues it when its
# node is lost; the attempt check keeps a message from running a job twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "ack_emulation": False,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 10,
}

# --- dctoolkit ------------------------------------------------------------
DCT_STORAGE = Path(os.environ.get("DCT_STORAGE") or VAR_DIR / "storage").resolve()
DCT_SCRATCH = Path(os.environ.get("DCT_SCRATCH") or VAR_DIR / "scratch").resolve()
DCT_HEARTBEAT_SECONDS = _env_int("DCT_HEARTBEAT_SECONDS", 5, minimum=1)
DCT_NODE_TIMEOUT_SECONDS = _env_int("DCT_NODE_TIMEOUT_SECONDS", 15, minimum=2)
DCT_MAX_ATTEMPTS = _env_int("DCT_MAX_ATTEMPTS", 3, minimum=1)
DCT_FAIRSHARE_HALFLIFE_SECONDS = _env_duration("DCT_FAIRSHARE_HALFLIFE", "1d")
DCT_BASE_URL = os.environ.get("DCT_BASE_URL", "http://localhost:8000").rstrip("/")
DCT_REQUIRE_SANDBOX = _env_bool("DCT_REQUIRE_SANDBOX", PRODUCTION)
DCT_SANDBOX_PATHS = os.environ.get("DCT_SANDBOX_PATHS", "")
# Keep each bubblewrap sandbox for the next job of the same user (jobs/warm.py).
DCT_WARM_SANDBOXES = _env_bool("DCT_WARM_SANDBOXES", True)
# Per-job cgroups (jobs/cgroups.py): memory and process limits every process of a job is held to.
# auto: where the node can make them (else it says so and watches memory); off: never.
DCT_CGROUPS = os.environ.get("DCT_CGROUPS", "auto").strip().lower() or "auto"
if DCT_CGROUPS not in {"auto", "off"}:
    raise ImproperlyConfigured(f"DCT_CGROUPS={DCT_CGROUPS!r}: use auto or off.")
# Processes (and threads) a job may have at once, counting only its own (cgroup pids.max).
DCT_JOB_MAX_PIDS = _env_int("DCT_JOB_MAX_PIDS", 4096, minimum=1)
# GPUs a node declares instead of probing NVML: a count or comma-separated names.
DCT_GPUS = os.environ.get("DCT_GPUS", "")
try:
    from dctoolkit.jobs.sandbox import SandboxConfigError, parse_sandbox_paths

    parse_sandbox_paths(DCT_SANDBOX_PATHS)
except SandboxConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# The bubblewrap binary; unset: `bwrap` on PATH.  A path that is not an
# executable turns the sandbox off on that node (and says so).
DCT_BWRAP = os.environ.get("DCT_BWRAP", "")
DCT_CONTAINERS = [os.path.normpath(p.strip()) for p in os.environ.get("DCT_CONTAINERS", "").split(",") if p.strip()]
DCT_DEFAULT_NETWORK = os.environ.get("DCT_DEFAULT_NETWORK", "host")
if DCT_DEFAULT_NETWORK not in {"host", "none", "private"}:
    raise ImproperlyConfigured(
        f"DCT_DEFAULT_NETWORK={DCT_DEFAULT_NETWORK!r}: use host (the node's network), none (no network) "
        "or private (outbound only, through pasta or slirp4netns)."
    )
DCT_MAX_QUEUE = _env_int("DCT_MAX_QUEUE", 100_000, minimum=1)
# Output files one job may leave in shared storage, in MB of data really held
# (a sparse file counts what it holds, not its apparent size); past it the job
# fails and storage keeps no more.  10 GB: far above what a batch job's
# results usually are, well below what fills a shared disk.
DCT_MAX_OUTPUT_MB = _env_int("DCT_MAX_OUTPUT_MB", 10240, minimum=1)
# The portal: self-service sign-up (off in production unless DCT_ALLOW_SIGNUP=1:
# anyone who reaches the portal could otherwise make an account and run jobs) and
# where the staff's Flower link points (./dct up starts Flower on DCT_FLOWER_PORT).
DCT_ALLOW_SIGNUP = _env_bool("DCT_ALLOW_SIGNUP", not PRODUCTION)
DCT_FLOWER_URL = os.environ.get("DCT_FLOWER_URL") or f"http://localhost:{_env_int('DCT_FLOWER_PORT', 5555)}/"

# --- log-in throttling (django-axes) ---------------------------------------
# After AXES_FAILURE_LIMIT wrong passwords for one user name from one address,
# that pair is refused for AXES_COOLOFF_TIME; the login form says so.  Keyed by
# the pair, so another user behind the same address (a lab's NAT) can still log
# in, and the owner can from elsewhere.  API tokens never pass through here.
INSTALLED_APPS += ["axes"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # last, as django-axes asks
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _env_int("DCT_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = _env_int("DCT_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "dctoolkit.accounts.views.locked_out"
# The address is REMOTE_ADDR (a client cannot forge it; behind a proxy it is
# the proxy's, and the lockout is then per user name).
AXES_VERBOSE = False

# --- email ----------------------------------------------------------------
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_PORT = _env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "dctoolkit@localhost")
# Seconds an SMTP exchange may take: a server that hangs must not stall the scheduler loop.
EMAIL_TIMEOUT = 10
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"dctoolkit": {"handlers": ["console"], "level": os.environ.get("DCT_LOG_LEVEL", "INFO")}},
}
