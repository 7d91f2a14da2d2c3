"""./dct status ID... [--as snakemake]

`./dct status` and `manage.py status` are answered by `dctoolkit.commandline`
before Django starts; this command is the same answer for `call_command` and
`manage.py help`.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import CommandError

from dctoolkit.accounts.identity import IdentityError
from dctoolkit.checks import TAG as CHECK_TAG
from dctoolkit.cli import DctCommand
from dctoolkit.commandline import STATUS_HELP, SetupError, add_status_arguments, answer_status
from dctoolkit.jobs.status import StatusError


class Command(DctCommand):
    help = STATUS_HELP
    json_option = False
    requires_system_checks = [CHECK_TAG]  # as `job` and `submit`: scripts call it often

    def add_arguments(self, parser):
        add_status_arguments(parser)

    def handle(self, *args, **options):
        try:
            words = answer_status(settings, options["ids"], options["style"], options["user"])
        except (StatusError, IdentityError, SetupError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write("\n".join(words))
