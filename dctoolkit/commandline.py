"""The `dct` command (and `manage.py`): fast commands first, everything else through Django.

`dct status ID...` is what workflow tools call for every job, every few
seconds (Snakemake gives its status command little time), so it does not
start Django: it reads the settings module (the one source of settings), and
then either asks the server (DCT_SERVER, through `dctoolkit.client.remote`,
which imports no Django) or reads two columns straight from the database
(SQLite through the standard library; another engine through Django's own
connection, without the app registry, the portal or Celery).  Who may see
which job is `dctoolkit.jobs.visibility`, as everywhere.

`job` and `submit` (LIGHT_COMMANDS) go through Django, with only the apps
they need, and the REST framework (the job's JSON shape) without its
optional extras (REST_FRAMEWORK_EXTRAS).

`pip install -e .` makes `dct`, `dct-submit`, `dct-status` and `dct-cancel`
of the functions at the end (pyproject.toml `[project.scripts]`).
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple

from dctoolkit.accounts.identity import IdentityError, acting_user_name
from dctoolkit.jobs.status import STYLES, JobRow, StatusError, parse_job_ids, status_words

if TYPE_CHECKING:  # imported when needed: argparse is a fifth of a `dct status` call's start-up
    import argparse

SETTINGS_MODULE = "dctoolkit.settings"
# The tables status reads (the models' own names; a unit test holds them to the models).
USER_TABLE = "auth_user"
JOB_TABLE = "jobs_job"
# Ids per SELECT: well under every engine's limit on parameters in one statement.
IDS_PER_QUERY = 500
# Seconds SQLite waits for a writer's lock before giving up (settings' OPTIONS may say otherwise).
SQLITE_TIMEOUT_SECONDS = 30
DATABASE_TROUBLE = "the database is not reachable or not set up ({}); run './dct migrate', and check DATABASE_URL"
# What PostgreSQL says behind a pooler that hands each transaction to another server connection (PgBouncer before
# 1.21 in transaction mode) to a client that prepared a statement on the last one.
LOST_PREPARED = (
    "the database server has lost a statement this process prepared ({}): a connection pooler in transaction "
    "mode that keeps no prepared statement across transactions (PgBouncer before 1.21) stands between; set "
    'DCT_DB_PREPARE=0 for every dctoolkit process (README, Deployment, "Database connections")'
)


def database_trouble(first_line: str) -> str:
    """What a person is told when the database cannot be used, from the first line of the error."""
    if "prepared statement" in first_line and "does not exist" in first_line:
        return LOST_PREPARED.format(first_line)
    return DATABASE_TROUBLE.format(first_line)


class SetupError(Exception):
    """The settings or the database could not be read; the message is for a person."""


class Account(NamedTuple):
    """The acting user's row (a `visibility.Viewer`)."""

    id: int
    is_staff: bool


# --- status ---------------------------------------------------------------------------
class StatusArgs(NamedTuple):
    ids: list[str]
    style: str
    user: str | None


STATUS_HELP = (
    "Print one word per job, one per line: its state (waiting, queued, held, dispatched, running, suspended, "
    "succeeded, "
    "failed, cancelled), or with --as snakemake what Snakemake reads (running, success, failed); exit status 1 "
    "(and nothing on stdout) if any id is not a job of yours."
)


def status_parser(prog: str = "dct status") -> argparse.ArgumentParser:
    """The fast path's command line (help, usage errors): status's arguments and --user."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=STATUS_HELP)
    add_status_arguments(parser)
    parser.add_argument(
        "--user",
        default=None,
        help="act as this user (operators only, who can read the server's secret key); default: your OS user name",
    )
    return parser


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """status's own arguments, the one definition: the fast path's parser and the Django command's
    (`manage.py help status`, `call_command`) both take them from here."""
    parser.add_argument("ids", nargs="+", metavar="ID", help="job ids")
    parser.add_argument(
        "--as",
        dest="style",
        choices=STYLES,
        default="state",
        help="state: the job's state (default); snakemake: running for every state not final, success, "
        "failed for failed and cancelled (Snakemake's cluster-generic executor)",
    )


def quick_status_args(argv: list[str]) -> StatusArgs | None:
    """The usual forms (`ID...`, `--as S`, `--user U`, also `--as=S`) without argparse; None for anything
    else (help, an unknown option, no id, a bad style), which status_parser then answers as argparse does."""
    ids: list[str] = []
    options: dict[str, str] = {}
    rest = iter(argv)
    for arg in rest:
        name, eq, value = arg.partition("=")
        if name in ("--as", "--user"):
            value = value if eq else next(rest, "")
            if not value or name in options:
                return None
            options[name] = value
        elif arg.startswith("-"):
            return None
        else:
            ids.append(arg)
    style = options.get("--as", "state")
    if not ids or style not in STYLES:
        return None
    return StatusArgs(ids, style, options.get("--user"))


def status_main(argv: list[str], prog: str = "dct status") -> int:
    """`dct status ...`: the words on stdout and 0, or a message on stderr and 1."""
    args = quick_status_args(argv) or status_parser(prog).parse_args(argv)
    try:
        settings = load_settings()
    except SetupError as exc:
        print(f"dctoolkit: {exc}", file=sys.stderr)  # as every command says a bad setting (main)
        return 1
    try:
        print("\n".join(answer_status(settings, args.ids, args.style, args.user)))
    except (StatusError, IdentityError, SetupError) as exc:
        print(f"CommandError: {exc}", file=sys.stderr)
        return 1
    return 0


def answer_status(settings: Any, id_texts: list[str], style: str, requested_user: str | None) -> list[str]:
    """The words for `id_texts`, read as `settings` say (remote or local); StatusError, IdentityError or
    SetupError otherwise.  The Django command `status` answers through this too."""
    ids = parse_job_ids(id_texts)
    name = acting_user_name(requested_user, bool(settings.SECRET_KEY), Path(settings.VAR_DIR))
    if settings.DCT_SERVER:
        return remote_words(settings.DCT_SERVER, settings.DCT_TOKEN, ids, style)
    account, rows = read_jobs(settings.DATABASES["default"], name, ids)
    return status_words(ids, rows, account, style)


def remote_words(server: str, token: str, ids: list[int], style: str) -> list[str]:
    """The words through the API: one request for every IDS_PER_QUERY jobs (`GET /api/jobs/?id=...`); the
    server answers only the caller's jobs (the visibility rule)."""
    from dctoolkit.client.remote import Client, RemoteError

    rows: dict[int, JobRow] = {}
    try:
        client = Client(server, token)
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[start : start + IDS_PER_QUERY]
            for row in client.get_json("/api/jobs/", {"id": ",".join(map(str, chunk))})["jobs"]:
                rows[int(row["id"])] = JobRow(int(row["id"]), row["state"], 0)
    except RemoteError as exc:
        raise StatusError(str(exc)) from None
    # The server answered only the caller's jobs: each is theirs as far as the rule goes.
    return status_words(ids, rows, Account(0, True), style)


def read_jobs(database: dict[str, Any], user_name: str, ids: list[int]) -> tuple[Account | None, dict[int, JobRow]]:
    """The acting user's account (None: no account yet) and the rows of those of `ids` that exist."""
    with _cursor(database) as (execute, mark):
        users = execute(f"SELECT id, is_staff FROM {USER_TABLE} WHERE username = {mark}", [user_name])  # noqa: S608
        if not users:
            return None, {}
        account = Account(int(users[0][0]), bool(users[0][1]))
        rows: dict[int, JobRow] = {}
        for start in range(0, len(ids), IDS_PER_QUERY):
            chunk = ids[start : start + IDS_PER_QUERY]
            marks = ", ".join([mark] * len(chunk))
            sql = f"SELECT id, state, owner_id FROM {JOB_TABLE} WHERE id IN ({marks})"  # noqa: S608
            rows.update({int(i): JobRow(int(i), str(state), int(owner)) for i, state, owner in execute(sql, chunk)})
    return account, rows


Execute = Callable[[str, list[Any]], list[tuple[Any, ...]]]


@contextmanager
def _cursor(database: dict[str, Any]) -> Iterator[tuple[Execute, str]]:
    """A function that runs one SELECT and returns its rows, and the engine's parameter mark."""
    if database["ENGINE"] == "django.db.backends.sqlite3":
        with _sqlite(database) as run_sqlite:
            yield run_sqlite, "?"
        return
    # Any other engine: Django's own connection (its options, its driver), without django.setup().
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    from django.db import connections
    from django.db.utils import OperationalError, ProgrammingError

    def execute(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with warnings.catch_warnings():
            # Django warns about queries before its apps are loaded: status loads none, on purpose.
            warnings.filterwarnings("ignore", message="Accessing the database during app initialization")
            with connections["default"].cursor() as cursor:
                cursor.execute(sql, params)
                return list(cursor.fetchall())

    try:
        yield execute, "%s"
    except (OperationalError, ProgrammingError) as exc:
        raise SetupError(database_trouble(_first_line(exc))) from None
    finally:
        connections["default"].close()


@contextmanager
def _sqlite(database: dict[str, Any]) -> Iterator[Execute]:
    name = str(database["NAME"])
    timeout = float(database.get("OPTIONS", {}).get("timeout", SQLITE_TIMEOUT_SECONDS))
    try:
        # mode=rw: a missing database file is an error, never a new empty file.  A `file:` name is a URI
        # already (Django's test database in memory is one).
        uri = name if name.startswith("file:") else f"{Path(name).absolute().as_uri()}?mode=rw"
        connection = sqlite3.connect(uri, uri=True, timeout=timeout)
    except sqlite3.Error as exc:
        raise SetupError(database_trouble(f"{exc}: {name}")) from None
    try:
        yield lambda sql, params: connection.execute(sql, params).fetchall()
    except sqlite3.Error as exc:
        raise SetupError(database_trouble(_first_line(exc))) from None
    finally:
        connection.close()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_settings() -> ModuleType:
    """The settings module Django would use (DJANGO_SETTINGS_MODULE, else dctoolkit.settings), imported as is.

    A bad setting stops here with settings.py's own message (ImproperlyConfigured)."""
    from django.core.exceptions import ImproperlyConfigured  # small: settings.py imports it anyway

    try:
        return importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE") or SETTINGS_MODULE)
    except ImproperlyConfigured as exc:  # settings.py's message for a bad variable
        raise SetupError(str(exc)) from None


# --- entry points ---------------------------------------------------------------------
FAST_COMMANDS: dict[str, Callable[[list[str], str], int]] = {"status": status_main}
# Commands that need the job models and nothing of the portal, the API or the admin: Django starts only
# these of settings.INSTALLED_APPS for them (the others' imports are a third of such a call's start-up);
# operations holds the audit trail a cancel writes to.
# `cancel` too: Snakemake kills its cancel command after 2 s.
LIGHT_COMMANDS = frozenset({"job", "submit", "cancel"})
MODEL_APPS = ("django.contrib.auth", "django.contrib.contenttypes", "dctoolkit.accounts", "dctoolkit.nodes",
              "dctoolkit.jobs", "dctoolkit.operations")  # fmt: skip
# What the REST framework's `rest_framework.compat` imports whenever it can, and the light commands never
# use: PostgreSQL's model fields (ModelSerializer's mapping; the job shapes are plain serializers), the
# browsable API's markdown and pygments, schemas' yaml, uritemplate and inflection, its test client's
# requests.  Importing them is 40% of a `job` call's start-up (psycopg alone a sixth); the light commands
# import the framework with them hidden (`_import_rest_framework_lean`), every other process as it is.
REST_FRAMEWORK_EXTRAS = ("django.contrib.postgres.fields", "requests", "markdown", "pygments", "yaml",
                         "uritemplate", "inflection")  # fmt: skip


def main(argv: list[str] | None = None, prog: str | None = None) -> None:
    """`dct CMD ...` / `manage.py CMD ...`: a fast command, or Django's management command CMD."""
    args = sys.argv[1:] if argv is None else argv
    prog = prog or Path(sys.argv[0]).name
    if args and args[0] in FAST_COMMANDS:
        sys.exit(FAST_COMMANDS[args[0]](args[1:], f"{prog} {args[0]}"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        apps = settings.INSTALLED_APPS  # the first use reads every setting: a bad one is named here
    except ImproperlyConfigured as exc:
        sys.exit(f"dctoolkit: {exc}")  # the message says what to set; a traceback would bury it
    if args and args[0] in LIGHT_COMMANDS:
        # Before django.setup(), which execute_from_command_line calls: the app registry is made once.
        settings.INSTALLED_APPS = [app for app in apps if app in MODEL_APPS]
        _import_rest_framework_lean()
    execute_from_command_line([prog, *args])


def _import_rest_framework_lean() -> None:
    """Import `rest_framework.compat` as if REST_FRAMEWORK_EXTRAS were not installed (each becomes None
    there), then make them importable again for anything else in the process."""
    hidden = [name for name in REST_FRAMEWORK_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import rest_framework.compat  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def dct_submit() -> None:
    """`dct-submit ...` = `dct submit ...` (one word, for tools that run a command without a shell)."""
    main(["submit", *sys.argv[1:]], "dct")


def dct_status() -> None:
    """`dct-status ID...` = `dct status ID...`."""
    main(["status", *sys.argv[1:]], "dct")


def dct_cancel() -> None:
    """`dct-cancel ID...` = `dct cancel ID...` (Snakemake's cancel command runs without a shell)."""
    main(["cancel", *sys.argv[1:]], "dct")
