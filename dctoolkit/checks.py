"""Django system checks for a safe deployment (`./dct check`; every management command runs them).

Jobs share the node's network, so a broker or database reachable without
a password is reachable by every job: with DCT_PRODUCTION=1 those are
errors, and `./dct migrate` (run before the portal starts) refuses to go
on; so are DEBUG in production (a traceback shows settings to anyone) and
a node timeout that calls a healthy node lost.  The rest warn about a node
that would take no jobs or fail them all, storage the server cannot write,
SQLite where PostgreSQL belongs, and production defaults left at their
laptop values (links to localhost, mail printed on a console).

Ids: E001 broker password, E002 database password, E003 storage, E004 node
timeout, E005 DEBUG, E006 DCT_BILLING; W001 bubblewrap, W002 SQLite, W003 scratch (node),
W004 DCT_BASE_URL, W005 ALLOWED_HOSTS, W006 mail, W007 a DCT_ variable nothing reads (a misspelt or
removed setting, which would otherwise do nothing without a word).

Each check reads django.conf.settings when called, so tests call them
with settings overridden.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

TAG = "dctoolkit"
NETWORK_DATABASES = {"django.db.backends.postgresql": "PostgreSQL", "django.db.backends.mysql": "MySQL"}
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def found_unless(fine: object, kind: type[Error | Warning], text: str, hint: str, code: str) -> list[CheckMessage]:
    """No message when `fine` holds; else one of `kind` (Error, Warning) with `text`, `hint` and id dctoolkit.`code`."""
    return [] if fine else [kind(text, hint=hint, id=f"{TAG}.{code}")]


@register(TAG)
def check_broker_password(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1, REDIS_URL must carry a password."""
    return found_unless(
        not settings.PRODUCTION or urlsplit(settings.REDIS_URL).password,
        Error,
        f"REDIS_URL ({settings.REDIS_URL}) has no password, and every job can reach the broker: "
        "a job could read, delete or forge the messages that start other users' jobs.",
        hint="Set requirepass in the Redis configuration (deploy/redis.conf) and put the password in "
        "REDIS_URL: redis://:PASSWORD@HOST:6379/0.",
        code="E001",
    )


@register(TAG)
def check_database_password(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1, a PostgreSQL or MySQL DATABASE_URL must carry a password."""
    db = settings.DATABASES["default"]
    kind = NETWORK_DATABASES.get(db["ENGINE"])
    return found_unless(
        not settings.PRODUCTION or kind is None or db.get("PASSWORD"),
        Error,
        f"DATABASE_URL ({kind} database {db.get('NAME')!r} on {db.get('HOST') or 'the local socket'}) has no "
        "password, and every job can reach the database: it holds every user's API token.",
        hint=f"Give the {kind} user a password and put it in DATABASE_URL: "
        f"{'postgres' if kind == 'PostgreSQL' else 'mysql'}://USER:PASSWORD@HOST/DB.",
        code="E002",
    )


def unwritable(folder: Path) -> str:
    """Why this process cannot write `folder` or make it ("" when it can): "is not" or "cannot be made: X is not"."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return ""
    return "is not" if existing == folder else f"cannot be made: {existing} is not"


@register(TAG)
def check_storage_writable(app_configs=None, **kwargs) -> list[CheckMessage]:
    """DCT_STORAGE (or the folder it will be made in) must be writable by this process."""
    storage = Path(settings.DCT_STORAGE)
    problem = unwritable(storage)
    return found_unless(
        not problem,
        Error,
        f"DCT_STORAGE ({storage}) {problem} a folder this process (uid {os.getuid()}) can write; "
        "submissions and job outputs could not be stored.",
        hint=f"Make {storage} and give it to the account dctoolkit runs as (chown), or point DCT_STORAGE "
        "at a folder it owns.",
        code="E003",
    )


@register(TAG)
def check_production_database(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1, SQLite is a warning: nodes on other machines cannot share it."""
    return found_unless(
        not settings.PRODUCTION or settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
        Warning,
        f"DCT_PRODUCTION=1 with SQLite ({settings.DATABASES['default']['NAME']}): nodes on other machines "
        "cannot reach it, and its writes serialise the whole cluster.",
        hint="Use PostgreSQL: DATABASE_URL=postgres://USER:PASSWORD@HOST/DB (deploy/README.md).",
        code="W002",
    )


@register(TAG)
def check_node_timeout(app_configs=None, **kwargs) -> list[CheckMessage]:
    """DCT_NODE_TIMEOUT_SECONDS must be at least two heartbeats, or one late beat loses a healthy node."""
    beat, timeout = settings.DCT_HEARTBEAT_SECONDS, settings.DCT_NODE_TIMEOUT_SECONDS
    return found_unless(
        timeout >= 2 * beat,
        Error,
        f"DCT_NODE_TIMEOUT_SECONDS={timeout} is less than two heartbeats (DCT_HEARTBEAT_SECONDS={beat}): "
        "a node whose one heartbeat is late is called offline, and its running jobs are requeued.",
        hint=f"Set DCT_NODE_TIMEOUT_SECONDS to at least {2 * beat} (three heartbeats, {3 * beat}, is the "
        "default's ratio), or a shorter DCT_HEARTBEAT_SECONDS; the same values on the server and every node.",
        code="E004",
    )


@register(TAG)
def check_billing(app_configs=None, **kwargs) -> list[CheckMessage]:
    """DCT_BILLING must read as weights of cpu, gpu and mem_gb, or fair share cannot charge a job."""
    from dctoolkit.accounts.fairshare import BillingError, parse_billing

    try:
        parse_billing(settings.DCT_BILLING)
    except BillingError as exc:
        return [
            Error(
                f"DCT_BILLING={settings.DCT_BILLING!r}: {exc}.",
                hint="Write what a job costs a second per cpu, GPU and GB of memory, such as "
                "DCT_BILLING=cpu=1,gpu=8,mem_gb=0.25 (the default is cpu=1); the same on the server and every node.",
                id="dctoolkit.E006",
            )
        ]
    return []


@register(TAG)
def check_production_debug(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1, DEBUG must be off: its error pages show settings and code to anyone."""
    return found_unless(
        not (settings.PRODUCTION and settings.DEBUG),
        Error,
        "DEBUG=1 with DCT_PRODUCTION=1: an error page would show anyone who reaches the portal the "
        "settings, the code and the request of another user.",
        hint="Unset DEBUG (or DEBUG=0) in the environment or .env of the server; the logs keep every error.",
        code="E005",
    )


@register(TAG)
def check_production_addresses(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1, DCT_BASE_URL and ALLOWED_HOSTS left at their laptop defaults are warnings."""
    if not settings.PRODUCTION:
        return []
    found: list[CheckMessage] = []
    host = urlsplit(settings.DCT_BASE_URL).hostname or ""
    if host in LOOPBACK:
        found.append(
            Warning(
                f"DCT_BASE_URL ({settings.DCT_BASE_URL}) points at this machine's loopback: the links in "
                "users' mails (a job's page, its files) lead nowhere.",
                hint="Set DCT_BASE_URL to the portal's address as users reach it: DCT_BASE_URL=https://cluster.lab.",
                id="dctoolkit.W004",
            )
        )
    if all(h.strip("[]") in LOOPBACK for h in settings.ALLOWED_HOSTS):
        found.append(
            Warning(
                f"ALLOWED_HOSTS ({','.join(settings.ALLOWED_HOSTS)}) names only this machine's loopback: the "
                "portal answers 400 Bad Request to every request that uses the server's name.",
                hint="Set ALLOWED_HOSTS to the names users reach the portal by, comma-separated: "
                "ALLOWED_HOSTS=cluster.lab.",
                id="dctoolkit.W005",
            )
        )
    return found


@register(TAG)
def check_production_mail(app_configs=None, **kwargs) -> list[CheckMessage]:
    """With DCT_PRODUCTION=1 and no EMAIL_HOST, the mail users ask for is printed on a console and lost."""
    return found_unless(
        not settings.PRODUCTION or settings.EMAIL_HOST,
        Warning,
        "DCT_PRODUCTION=1 without EMAIL_HOST: the mail a user asks for (email = in a submission) is "
        "printed on the scheduler's console instead of sent.",
        hint="Set EMAIL_HOST (and EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS, "
        "DEFAULT_FROM_EMAIL as your SMTP server needs) in the server's environment.",
        code="W006",
    )


# Every DCT_ variable dctoolkit reads from its environment (a setting, or what a node gives a job, which may run
# dct commands itself), and those of its CI and test suite; tests/unit/test_checks.py holds it to the source.
KNOWN_VARIABLES = frozenset({
    "DCT_ALLOW_SIGNUP", "DCT_ATTEMPT", "DCT_BASE_URL", "DCT_BILLING", "DCT_BWRAP", "DCT_CALLER_DIR", "DCT_CGROUPS",
    "DCT_CI_COMPOSE", "DCT_CI_NO_MARIADB", "DCT_CI_NO_POSTGRES", "DCT_CI_WORKERS", "DCT_CONTAINERS",
    "DCT_DB_PREPARE", "DCT_DEFAULT_NETWORK", "DCT_DESKTOP", "DCT_FAIRSHARE_HALFLIFE", "DCT_FLOWER_PORT",
    "DCT_FLOWER_URL", "DCT_GLOBALID", "DCT_GPUS", "DCT_GPU_IDLE_AFTER", "DCT_GPU_IDLE_PERCENT",
    "DCT_GPU_UTILIZATION_SOURCE", "DCT_HEARTBEAT_SECONDS", "DCT_HTTPS", "DCT_IDLE_MINUTES", "DCT_IDLE_SOURCE",
    "DCT_JOB_ID", "DCT_JOB_MAX_PIDS", "DCT_LDAP_BIND_DN", "DCT_LDAP_BIND_PASSWORD", "DCT_LDAP_BIND_PASSWORD_FILE",
    "DCT_LDAP_GROUP_SEARCH", "DCT_LDAP_STAFF_GROUP", "DCT_LDAP_URI", "DCT_LDAP_USER_FILTER", "DCT_LDAP_USER_SEARCH",
    "DCT_LOCALID", "DCT_LOGIN_COOLOFF_MINUTES", "DCT_LOGIN_FAILURE_LIMIT", "DCT_LOG_LEVEL", "DCT_MAX_ATTEMPTS",
    "DCT_MAX_OUTPUT_MB", "DCT_MAX_QUEUE", "DCT_MAX_QUEUED_JOBS", "DCT_MAX_RUNNING_GPUS", "DCT_MAX_RUNNING_JOBS",
    "DCT_MAX_UPLOAD_MB", "DCT_METRICS_ALLOW", "DCT_METRICS_TOKEN", "DCT_NNODES", "DCT_NODEID", "DCT_NODES",
    "DCT_NODE_LABELS", "DCT_NODE_OWNER", "DCT_NODE_POLICY", "DCT_NODE_SLOTS", "DCT_NODE_TIMEOUT_SECONDS",
    "DCT_NTASKS", "DCT_OIDC_CLIENT_ID", "DCT_OIDC_CLIENT_SECRET", "DCT_OIDC_CLIENT_SECRET_FILE", "DCT_OIDC_ISSUER",
    "DCT_OIDC_SCOPES", "DCT_OIDC_SIGN_ALGO", "DCT_OIDC_STAFF_CLAIM", "DCT_OIDC_STAFF_GROUP", "DCT_PROCESS",
    "DCT_PRODUCTION", "DCT_REQUIRE_SANDBOX", "DCT_RETENTION", "DCT_SANDBOX_PATHS", "DCT_SCRATCH", "DCT_SERVER",
    "DCT_STORAGE", "DCT_SUSPEND_MAX", "DCT_TEST_DATABASE_URL", "DCT_TEST_MYSQL_URL", "DCT_TOKEN", "DCT_TOOLS_VENV",
    "DCT_UP_DEMO_PASSWORD", "DCT_USER_QUOTA", "DCT_VAR", "DCT_WARM_SANDBOXES", "DCT_WEB_PORT"
})  # fmt: skip
# Settings that were, and why they went.
REMOVED_VARIABLES = {
    "DCT_PASS_GATHER_MS": "removed on 2026-12-07: it made no measured difference, at 2 nodes or at 50 "
    '(bench/README.md, "Coalesced wake-ups at fifty nodes"); unset it',
}


@register(TAG)
def check_unknown_variables(app_configs=None, **kwargs) -> list[CheckMessage]:
    """A DCT_ variable in the environment that dctoolkit does not read: most likely a misspelt setting, which
    would do nothing without a word."""
    found: list[CheckMessage] = []
    for name in sorted(n for n in os.environ if n.startswith("DCT_") and n not in KNOWN_VARIABLES):
        close = difflib.get_close_matches(name, KNOWN_VARIABLES, n=1)
        hint = REMOVED_VARIABLES.get(name) or (
            f"did you mean {close[0]}?" if close else "README, Settings, lists every DCT_ setting"
        )
        found.append(Warning(f"{name} is set, but dctoolkit reads no such setting", hint=hint, id=f"{TAG}.W007"))
    return found


def refuse_to_start(what: str) -> None:
    """Run these checks in a process that runs no management command (a node); exit on an error.

    Raises SystemExit naming each error and its hint; warnings are only logged.
    """
    import logging

    from django.core.checks import run_checks

    log = logging.getLogger("dctoolkit.checks")
    found = run_checks(tags=[TAG])
    for message in found:
        if not message.is_serious():
            log.warning("%s", message)
    errors = [m for m in found if m.is_serious()]
    if errors:
        raise SystemExit(f"{what} will not start:\n" + "\n".join(f"  {m}" for m in errors))
