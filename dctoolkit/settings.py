"""Every setting of dctoolkit, read from the environment once, with laptop defaults.

Only this module reads the environment (a `.env` file in the project root is
read too).  A bad value stops start-up with a message that names the variable
and the values it accepts.
"""

from __future__ import annotations

import os
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
# The environment of whoever started this process, before `.env` adds the server's settings and secrets to
# it: what `getenv` and `$ENV(NAME)` of a submission read (HTCondor reads the submitter's environment).
SUBMITTER_ENV = dict(os.environ)
try:
    load_dotenv(BASE_DIR / ".env", override=False)
except PermissionError:
    pass  # another Unix user's .env: its settings and secrets are not ours (cli.py refuses --user)

VAR_DIR = Path(os.environ.get("DCT_VAR", BASE_DIR / "var")).resolve()
# The folder the command line was called from: `./dct` changes into the project folder and says where it
# was called from here, so that relative paths on its command line mean the caller's folder (cli.caller_path).
DCT_CALLER_DIR = Path(os.environ.get("DCT_CALLER_DIR") or os.getcwd())


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


def _env_int(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r}: use a whole number, such as {default}.") from None
    if maximum is not None and not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name}={raw!r}: use a whole number from {minimum} to {maximum}.")
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={raw!r}: use a whole number of at least {minimum}.")
    return value


def _env_duration(name: str, default: str) -> float:
    from dctoolkit.lib.units import UnitError, parse_duration

    raw = os.environ.get(name) or default
    try:
        return parse_duration(raw)
    except UnitError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r}: {exc}") from None


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    # `secrets` (hashlib, OpenSSL) is imported only to make a key: it is a large share of the start-up
    # of a command that needs none, such as `dct status`.
    if DCT_SERVER:
        # The remote command line signs nothing and touches nothing local but
        # the files it is asked to write: a key for this process alone.
        import secrets

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
        import secrets

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
    "dctoolkit.operations",
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
    # readers (the portal, the CLI) go on while a node writes.  The page cache: at most 16 MiB per connection
    # (SQLite's default is 2 MiB), taken only as pages are read; a scheduling pass at a million queued jobs
    # dirties about 10 MiB of index pages, which in 2 MiB spilled and were read back (bench/README.md, "Scale").
    _db.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-16384;",
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
    # The hot statements of a node and the scheduler are prepared, once per connection (`fastsql.cursor`;
    # Django's other cursors bind on the client and are never prepared).  DCT_DB_PREPARE=0 switches that off
    # for a pooler that cannot keep prepared statements across transactions (PgBouncer before 1.21).
    if os.environ.get("DCT_DB_PREPARE", "1") != "0":
        _db["OPTIONS"].setdefault("prepare_threshold", 5)
if _db["ENGINE"] == "django.db.backends.mysql":
    # PyMySQL (pure Python) stands in for mysqlclient, which needs a C toolchain
    # and the MariaDB headers on every node.
    import pymysql

    pymysql.install_as_MySQLdb()
    _db.setdefault("OPTIONS", {}).update({"charset": "utf8mb4", "isolation_level": "read committed"})
DATABASES = {"default": _db}
# "MySQL does not support indexes with conditions": known; on MySQL and MariaDB the job table keeps a
# full index where the others have a partial one (jobs migration 0018).
SILENCED_SYSTEM_CHECKS = ["models.W037"]
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
# Plain fields in one request: a folder upload sends one `paths` field per file, beside the form's own.
DATA_UPLOAD_MAX_NUMBER_FIELDS = DATA_UPLOAD_MAX_NUMBER_FILES + 100


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
# Whether the operator named a broker; `./dct up` starts a private Redis when not.
REDIS_URL_SET = bool(os.environ.get("REDIS_URL"))
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT = "dctoolkit.lib.broker:Transport"  # Redis, one client per channel (broker.py)
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
# What a job costs a second in fair share, as Slurm's TRESBillingWeights: cpu=1,gpu=8,mem_gb=0.25 (checks.py).
DCT_BILLING = os.environ.get("DCT_BILLING", "").strip() or "cpu=1"
# Caps per user (0: none), overridden per user by `./dct limits` (accounts.limits).
DCT_MAX_RUNNING_JOBS = _env_int("DCT_MAX_RUNNING_JOBS", 0)
DCT_MAX_RUNNING_GPUS = _env_int("DCT_MAX_RUNNING_GPUS", 0)
DCT_MAX_QUEUED_JOBS = _env_int("DCT_MAX_QUEUED_JOBS", 0)
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
# GPUs a node declares instead of probing NVML: a count, or comma-separated NAME[:MEMORY[:CAPABILITY]]
# (A100:40GB,T4:16GB).
DCT_GPUS = os.environ.get("DCT_GPUS", "")
if DCT_GPUS.strip():
    from dctoolkit.lib.units import UnitError
    from dctoolkit.nodes.worker.gpus import declared_gpus

    try:
        declared_gpus(DCT_GPUS)
    except UnitError as exc:
        raise ImproperlyConfigured(f"DCT_GPUS={DCT_GPUS!r}: {exc}") from None
# GPU time not wasted (jobs/gpuuse.py): a node samples the utilisation of the GPUs its jobs hold each
# heartbeat, through NVML, or, where this names a file, from that file (JSON, GPU index -> percent, as
# {"0": 0, "1": 80}; re-read every beat: for declared GPUs and tests).  GPUs under DCT_GPU_IDLE_PERCENT for
# DCT_GPU_IDLE_AFTER are held idle: the job's page and mail say so, and waiting GPU jobs' reasons name it.
# The same values on the server and every node (a node marks when its samples go under the threshold).
DCT_GPU_UTILIZATION_SOURCE = os.environ.get("DCT_GPU_UTILIZATION_SOURCE", "").strip()
_idle_percent = os.environ.get("DCT_GPU_IDLE_PERCENT", "").strip() or "5"
try:
    DCT_GPU_IDLE_PERCENT = float(_idle_percent)
except ValueError:
    DCT_GPU_IDLE_PERCENT = -1.0
if not 0 < DCT_GPU_IDLE_PERCENT <= 100:
    raise ImproperlyConfigured(f"DCT_GPU_IDLE_PERCENT={_idle_percent!r}: use a percent above 0, up to 100, such as 5.")
DCT_GPU_IDLE_SECONDS = _env_duration("DCT_GPU_IDLE_AFTER", "30m")
# A node's labels, which jobs ask for with `labels = a, b` (comma-separated names).
try:
    from dctoolkit.jobs.scheduling.matching import LabelError, split_names

    DCT_NODE_LABELS = split_names(os.environ.get("DCT_NODE_LABELS", ""))
except LabelError as exc:
    raise ImproperlyConfigured(f"DCT_NODE_LABELS={os.environ.get('DCT_NODE_LABELS', '')!r}: {exc}") from None
# Desktop nodes (nodes/worker/desktop.py): DCT_NODE_POLICY=desktop lends a workstation's idle time only;
# DCT_IDLE_MINUTES, DCT_IDLE_SOURCE, DCT_SUSPEND_MAX and DCT_NODE_OWNER say how.  Bad values are named by
# the system checks (checks.py) and keep such a node from starting; the defaults stand in meanwhile.
if any(os.environ.get(name) for name in ("DCT_NODE_POLICY", "DCT_IDLE_MINUTES", "DCT_IDLE_SOURCE",
                                          "DCT_SUSPEND_MAX", "DCT_NODE_OWNER")):  # fmt: skip
    from dctoolkit.nodes.worker.desktop import desktop_config

    DCT_DESKTOP = desktop_config(os.environ)
else:  # unset: nothing to parse, and the module is not imported (start-up)
    from types import SimpleNamespace

    # mypy: the same attributes as desktop.DesktopConfig's defaults, without importing it.
    DCT_DESKTOP = SimpleNamespace(policy="", idle_minutes=15.0, idle_source="", suspend_max_seconds=600.0,  # type: ignore[assignment]
                                  owner="", problems=(), is_desktop=False)  # fmt: skip
DCT_NODE_POLICY = DCT_DESKTOP.policy
DCT_IDLE_MINUTES = DCT_DESKTOP.idle_minutes
DCT_IDLE_SOURCE = DCT_DESKTOP.idle_source
DCT_SUSPEND_MAX_SECONDS = DCT_DESKTOP.suspend_max_seconds
DCT_NODE_OWNER = DCT_DESKTOP.owner
if DCT_SANDBOX_PATHS.strip():  # unset: nothing to check, and the sandbox module is not imported (start-up)
    try:
        from dctoolkit.nodes.worker.sandbox import SandboxConfigError, parse_sandbox_paths

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
# CPUs a node offers to jobs when its command line does not say (worker_entry.py
# without --slots, each node of `./dct up`, a plain `celery -A dctoolkit worker`);
# 0: all its logical CPUs.  The worker takes one message per slot, so the slots
# a node registers are its pool's threads: CELERY_WORKER_CONCURRENCY below, which
# worker_entry.py's --slots overrides with --concurrency, and which the worker's
# start (nodes/worker/tasks.py) reads back from the pool.  Two settings, one
# meaning each: what the operator asks for, and what the running worker has.
DCT_NODE_SLOTS = _env_int("DCT_NODE_SLOTS", 0, minimum=0)
if DCT_NODE_SLOTS:
    CELERY_WORKER_CONCURRENCY = DCT_NODE_SLOTS
# Output files one job may leave in shared storage, in MB of data really held
# (a sparse file counts what it holds, not its apparent size); past it the job
# fails and storage keeps no more.  10 GB: far above what a batch job's
# results usually are, well below what fills a shared disk.
DCT_MAX_OUTPUT_MB = _env_int("DCT_MAX_OUTPUT_MB", 10240, minimum=1)
# The portal: self-service sign-up (off in production unless DCT_ALLOW_SIGNUP=1:
# anyone who reaches the portal could otherwise make an account and run jobs) and
# where the staff's Flower link points (./dct up starts Flower on DCT_FLOWER_PORT).
DCT_ALLOW_SIGNUP = _env_bool("DCT_ALLOW_SIGNUP", not PRODUCTION)
# `./dct up` (dctoolkit/dev/up.py): how many nodes it starts and the ports of the portal and Flower.
DCT_NODES = _env_int("DCT_NODES", 2, minimum=1)
DCT_WEB_PORT = _env_int("DCT_WEB_PORT", 8000, minimum=1, maximum=65535)
DCT_FLOWER_PORT = _env_int("DCT_FLOWER_PORT", 5555, minimum=1, maximum=65535)
DCT_FLOWER_URL = os.environ.get("DCT_FLOWER_URL") or f"http://localhost:{DCT_FLOWER_PORT}/"

# --- operations: metrics ----------------------------------------------------
# GET /metrics (Prometheus' text format) answers a scraper that sends
# `Authorization: Bearer DCT_METRICS_TOKEN`, or one whose address is in
# DCT_METRICS_ALLOW (comma-separated addresses or CIDR networks); with neither
# set it answers nobody (403).
DCT_METRICS_TOKEN = os.environ.get("DCT_METRICS_TOKEN", "").strip()


def _env_networks(name: str) -> list:
    import ipaddress

    networks = []
    for item in os.environ.get(name, "").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ImproperlyConfigured(
                    f"{name}: {item.strip()!r} is not an address or network; use e.g. 10.0.0.5,192.168.1.0/24,::1."
                ) from None
    return networks


DCT_METRICS_ALLOW = _env_networks("DCT_METRICS_ALLOW")

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

# --- operations: retention and quota -----------------------------------------
# DCT_RETENTION (e.g. 90d): the scheduler deletes the files of jobs that ended
# longer ago, a bounded batch per round (records and accounting stay, as with
# `./dct purge`); unset: files stay until purged by hand.  DCT_USER_QUOTA
# (e.g. 200GB): a user whose files in shared storage take more cannot submit.
DCT_RETENTION_SECONDS: float | None = (
    _env_duration("DCT_RETENTION", "1d") if os.environ.get("DCT_RETENTION", "").strip() else None
)


def _env_size_mb(name: str) -> int | None:
    from dctoolkit.lib.units import UnitError, parse_size_mb

    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return parse_size_mb(raw)
    except UnitError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r}: {exc}") from None


DCT_USER_QUOTA_MB = _env_size_mb("DCT_USER_QUOTA")

# --- sign-on: LDAP and OpenID Connect ----------------------------------------
# Each is on when its server is set; local accounts (the model backend) keep
# working after them.  A user is created at the first log-in; staff comes from
# the LDAP group DCT_LDAP_STAFF_GROUP or the OIDC claim DCT_OIDC_STAFF_CLAIM
# holding DCT_OIDC_STAFF_GROUP.  Secrets come from the environment or a file
# (`*_FILE`), never from a command line.


def _env_secret(name: str) -> str:
    """`NAME`, else the first line of the file named by `NAME_FILE`."""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if not path:
        return os.environ.get(name, "")
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}_FILE={path!r}: cannot read it ({exc.strerror}).") from None


def _ldap_settings() -> dict:
    """django-auth-ldap's settings from DCT_LDAP_*; empty when DCT_LDAP_URI is unset."""
    uri = os.environ.get("DCT_LDAP_URI", "").strip()
    if not uri:
        return {}
    import ldap
    from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

    base = os.environ.get("DCT_LDAP_USER_SEARCH", "").strip()
    if not base:
        raise ImproperlyConfigured("DCT_LDAP_URI is set but DCT_LDAP_USER_SEARCH is not: set the users' base DN.")
    user_filter = os.environ.get("DCT_LDAP_USER_FILTER", "").strip() or "(uid=%(user)s)"
    config = {
        "AUTH_LDAP_SERVER_URI": uri,
        "AUTH_LDAP_BIND_DN": os.environ.get("DCT_LDAP_BIND_DN", ""),
        "AUTH_LDAP_BIND_PASSWORD": _env_secret("DCT_LDAP_BIND_PASSWORD"),
        "AUTH_LDAP_USER_SEARCH": LDAPSearch(base, ldap.SCOPE_SUBTREE, user_filter),
        "AUTH_LDAP_USER_ATTR_MAP": {"first_name": "givenName", "last_name": "sn", "email": "mail"},
        "AUTH_LDAP_ALWAYS_UPDATE_USER": True,
        "AUTH_LDAP_CONNECTION_OPTIONS": {ldap.OPT_NETWORK_TIMEOUT: 5, ldap.OPT_TIMEOUT: 10},
    }
    staff = os.environ.get("DCT_LDAP_STAFF_GROUP", "").strip()
    if staff:
        groups_base = os.environ.get("DCT_LDAP_GROUP_SEARCH", "").strip() or staff.split(",", 1)[-1]
        config["AUTH_LDAP_GROUP_SEARCH"] = LDAPSearch(groups_base, ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)")
        config["AUTH_LDAP_GROUP_TYPE"] = GroupOfNamesType()
        config["AUTH_LDAP_USER_FLAGS_BY_GROUP"] = {"is_staff": staff}
    return config


def _oidc_settings() -> dict:
    """mozilla-django-oidc's settings from DCT_OIDC_*; empty when DCT_OIDC_ISSUER is unset.

    The provider's endpoints come from its discovery document
    (`ISSUER/.well-known/openid-configuration`), read at the first log-in
    (dctoolkit/accounts/signon.py).
    """
    issuer = os.environ.get("DCT_OIDC_ISSUER", "").strip().rstrip("/")
    if not issuer:
        return {}
    client_id = os.environ.get("DCT_OIDC_CLIENT_ID", "").strip()
    secret = _env_secret("DCT_OIDC_CLIENT_SECRET")
    if not client_id or not secret:
        raise ImproperlyConfigured(
            "DCT_OIDC_ISSUER is set: set DCT_OIDC_CLIENT_ID and DCT_OIDC_CLIENT_SECRET "
            "(or DCT_OIDC_CLIENT_SECRET_FILE)."
        )
    return {
        "DCT_OIDC_ISSUER": issuer,
        "OIDC_RP_CLIENT_ID": client_id,
        "OIDC_RP_CLIENT_SECRET": secret,
        "OIDC_RP_SIGN_ALGO": os.environ.get("DCT_OIDC_SIGN_ALGO", "RS256"),
        "OIDC_RP_SCOPES": os.environ.get("DCT_OIDC_SCOPES", "openid email profile"),
        "DCT_OIDC_STAFF_CLAIM": os.environ.get("DCT_OIDC_STAFF_CLAIM", "groups"),
        "DCT_OIDC_STAFF_GROUP": os.environ.get("DCT_OIDC_STAFF_GROUP", ""),
        "OIDC_AUTHENTICATE_CLASS": "dctoolkit.accounts.signon.OIDCLogIn",
        "OIDC_TIMEOUT": 10,
        "LOGIN_REDIRECT_URL_FAILURE": "/accounts/login/?signon=failed",
    }


_LDAP = _ldap_settings()
_OIDC = _oidc_settings()
globals().update(_LDAP)
globals().update(_OIDC)
DCT_LDAP_ON = bool(_LDAP)
DCT_OIDC_ON = bool(_OIDC)
DCT_OIDC_ISSUER: str = _OIDC.get("DCT_OIDC_ISSUER", "")
DCT_OIDC_STAFF_CLAIM: str = _OIDC.get("DCT_OIDC_STAFF_CLAIM", "groups")
DCT_OIDC_STAFF_GROUP: str = _OIDC.get("DCT_OIDC_STAFF_GROUP", "")
if DCT_OIDC_ON:
    INSTALLED_APPS += ["mozilla_django_oidc"]
AUTHENTICATION_BACKENDS[1:1] = (["django_auth_ldap.backend.LDAPBackend"] if DCT_LDAP_ON else []) + (
    ["dctoolkit.accounts.signon.OIDCBackend"] if DCT_OIDC_ON else []
)

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

# The level of dctoolkit's log (and of a node worker's Celery log: worker_entry.py --loglevel).
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DCT_LOG_LEVEL = (os.environ.get("DCT_LOG_LEVEL") or "INFO").strip().upper()
if DCT_LOG_LEVEL not in LOG_LEVELS:
    raise ImproperlyConfigured(f"DCT_LOG_LEVEL={os.environ['DCT_LOG_LEVEL']!r}: use {', '.join(LOG_LEVELS)}.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"dctoolkit": {"handlers": ["console"], "level": DCT_LOG_LEVEL}},
}
