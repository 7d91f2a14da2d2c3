"""./dct release ID..."""

from dctoolkit.jobs.management.commands._control import ControlCommand


class Command(ControlCommand):
    help = "Put held jobs back in the queue."
    verb = "release"
