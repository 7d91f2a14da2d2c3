"""./dct cancel ID..."""

from dctoolkit.jobs.management.commands._control import ControlCommand


class Command(ControlCommand):
    help = "Cancel jobs (a running one is killed within about two seconds)."
    verb = "cancel"
