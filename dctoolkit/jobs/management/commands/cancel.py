"""./dct cancel ID..."""

from dctoolkit.checks import TAG as CHECK_TAG
from dctoolkit.jobs.management.commands._control import ControlCommand


class Command(ControlCommand):
    help = "Cancel jobs (a running one is killed within about two seconds)."
    verb = "cancel"
    # Only dctoolkit's own checks (as submit): workflow tools cancel with a deadline (Snakemake's is 2 s).
    requires_system_checks = [CHECK_TAG]
