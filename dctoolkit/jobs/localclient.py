"""The Python client's local backend: `dctoolkit.client.Client()` with no server, on this machine's database.

It acts as `./dct` acts for the user running Python (dctoolkit.accounts.identity), and answers the same
shapes: submitting goes through intake (prepare, queue) as `./dct submit` does; job, cancel and results
run the commands themselves (`job --json`, `cancel --json`, `results --dest`), so that their rules (who
may see what, the answers to a cancel, where results go) stay in one place.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from dctoolkit.client.api import ClientError, SubmissionRefusedError
from dctoolkit.commandline import database_trouble

SETTINGS_MODULE = "dctoolkit.settings"


def start_django() -> None:
    """Django set up with dctoolkit's settings (once per process; a host program's own setup is kept)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", SETTINGS_MODULE)
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


class LocalBackend:
    def __init__(self) -> None:
        start_django()

    def submit(self, text: str, source_name: str, folder: Path, files: dict[str, Path] | None) -> list[dict]:
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.utils import timezone

        from dctoolkit.jobs.intake.parse import SubmissionError
        from dctoolkit.jobs.intake.queue import FileSource, FolderFiles, UploadedFiles, prepare, queue
        from dctoolkit.jobs.models import Job
        from dctoolkit.jobs.web.serializers import job_dict

        with ExitStack() as opened, database_errors():
            source: FileSource
            if files is None:
                source = FolderFiles(folder)
            else:  # matched by name, as the API matches uploads
                streams: dict[str, BinaryIO] = {name: opened.enter_context(open(p, "rb")) for name, p in files.items()}
                source = UploadedFiles(streams)
            user, _ = get_user_model().objects.get_or_create(username=acting_name())
            try:
                # The submitter's environment, for getenv and $ENV(NAME), as `./dct submit` gives it.
                jobs = queue(prepare(text, source_name, source, dict(settings.SUBMITTER_ENV)), user)
            except SubmissionError as exc:
                raise SubmissionRefusedError(str(exc)) from None
            now = timezone.now()
            rows = Job.objects.filter(id__in=[j.id for j in jobs]).select_related("owner", "node").order_by("id")
            return [job_dict(job, now) for job in rows]

    def job(self, job_id: int) -> dict:
        return run_command("job", str(job_id), "--json")

    def jobs(self, ids: list[int]) -> list[dict]:
        """The acting user's jobs of `ids` (as the API's `?id=`: one's own only), in one query."""
        from django.utils import timezone

        from dctoolkit.jobs.models import Job
        from dctoolkit.jobs.web.serializers import jobs_payload

        with database_errors():
            rows = Job.objects.filter(id__in=ids, owner__username=acting_name()).select_related("owner", "node")
            return jobs_payload(rows.order_by("id"), timezone.now())

    def cancel(self, job_id: int) -> dict:
        return run_command("cancel", str(job_id), "--json")["jobs"][0]

    def results(self, job_id: int, dest: Path) -> Path:
        run_command("results", str(job_id), "--dest", str(dest))
        return dest


def acting_name() -> str:
    from django.conf import settings

    from dctoolkit.accounts.identity import acting_user_name
    from dctoolkit.cli import holds_secret_key

    return acting_user_name(None, holds_secret_key(), settings.VAR_DIR)


def run_command(*argv: str) -> Any:
    """A dctoolkit command's output (its JSON document when it prints one); ClientError with its message."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    out = io.StringIO()
    try:
        with database_errors():
            call_command(*argv, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        raise ClientError(str(exc)) from None
    text = out.getvalue()
    return json.loads(text) if "--json" in argv else text


@contextmanager
def database_errors() -> Iterator[None]:
    """A database that is not there or not set up: a ClientError saying what to do, not a traceback."""
    from django.db.utils import OperationalError, ProgrammingError

    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClientError(
            f"{database_trouble(first)} (or give Client(server=..., token=...) to use a server)"
        ) from None
