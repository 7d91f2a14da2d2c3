"""What every dctoolkit command shares: `--json`, `--user`, finding a user's job, and the remote mode.

With DCT_SERVER (and DCT_TOKEN) set, a command whose class says
`remote_capable = True` gets `self.remote`, an API client, and must then work
through it alone: the same output and exit codes, no database.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.utils import OperationalError, ProgrammingError

from dctoolkit.accounts.identity import IdentityError, acting_user_name
from dctoolkit.client.remote import Client, RemoteError
from dctoolkit.commandline import database_trouble
from dctoolkit.jobs.models import Job
from dctoolkit.lib.ids import MAX_ID, bounded_int


def holds_secret_key() -> bool:
    """Whether this process holds the server's secret key: the test of an operator.

    SECRET_KEY in the environment (or a .env this user could read): they have
    it already.  Otherwise the key is var/secret_key, mode 0600: its owner (or
    root) reads it, anyone else gets no key (settings.py leaves it empty).
    """
    try:
        return bool(settings.SECRET_KEY)
    except ImproperlyConfigured:  # Django's answer to an empty SECRET_KEY
        return False


class DctCommand(BaseCommand):
    """Base for dctoolkit commands.  `--json` prints exactly one document on stdout."""

    json_option = True
    user_option = True
    remote_capable = False  # True: works through the API when DCT_SERVER is set
    remote: Client | None = None
    acting_name = ""  # the user name the command acts for (set in execute)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        if self.json_option:
            parser.add_argument("--json", action="store_true", help="print one JSON document and nothing else")
        if self.user_option:
            parser.add_argument(
                "--user",
                default=None,
                help="act as this user (created on first use; operators only, who can read the server's "
                "secret key); default: your OS user name",
            )
        return parser

    def execute(self, *args: Any, **options: Any) -> Any:
        self.options = options
        try:
            self.acting_name = acting_user_name(options.get("user"), holds_secret_key(), settings.VAR_DIR)
        except IdentityError as exc:
            raise CommandError(str(exc)) from None
        try:
            if self.remote_capable and settings.DCT_SERVER:
                self.remote = Client(settings.DCT_SERVER, settings.DCT_TOKEN)
            return super().execute(*args, **options)
        except RemoteError as exc:
            raise CommandError(str(exc)) from None
        except (OperationalError, ProgrammingError) as exc:
            # Expected trouble a person can fix; never a traceback.
            raise CommandError(database_trouble(str(exc).strip().splitlines()[0])) from None

    def acting_user(self) -> AbstractBaseUser:
        """The user the command acts for: --user NAME (operators only), else the caller's own account."""
        user, _ = get_user_model().objects.get_or_create(username=self.acting_name)
        return user

    def acting_actor(self) -> AbstractBaseUser | str:
        """Who the audit trail names for this command: the acting user's account, or (a command that
        makes none, such as drain or adduser) their name alone."""
        return get_user_model().objects.filter(username=self.acting_name).first() or self.acting_name

    def user_job(self, job_id: int | str, user: AbstractBaseUser | None = None) -> Job:
        """The job, if the acting user may see it (their own; staff: any)."""
        user = user or self.acting_user()
        job_id = parse_job_id(job_id)
        job = Job.objects.visible_to(user).select_related("owner", "node", "submission").filter(id=job_id).first()
        if job is None:
            raise CommandError(f"no job {job_id} of yours; './dct jobs --all' lists your jobs")
        return job

    def emit_json(self, document: Any) -> None:
        self.stdout.write(json.dumps(document, indent=2, default=str))


def parse_job_id(text: int | str) -> int:
    """A job id from the command line; CommandError for anything else (a huge number too: the database
    could not hold it, and the query would fail with an overflow)."""
    number = bounded_int(str(text), 0, MAX_ID)
    if number is None:
        shown = str(text) if len(str(text)) <= 40 else f"{str(text)[:40]}… ({len(str(text)):,} characters)"
        raise CommandError(f"'{shown}' is not a job id; job ids are numbers, as './dct jobs' shows")
    return number


def caller_path(name: str | Path) -> Path:
    """A path from the command line, relative to the caller's folder (`dct` changes into its own: see
    settings.DCT_CALLER_DIR); `~` is the caller's home; an absolute path stays as it is."""
    return Path(settings.DCT_CALLER_DIR) / os.path.expanduser(name)


def render_table(rows: list[list[str]]) -> str:
    """Aligned columns (the first row is the header); the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)
