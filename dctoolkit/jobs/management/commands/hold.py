"""./dct hold ID..."""

from dctoolkit.jobs.management.commands._control import ControlCommand


class Command(ControlCommand):
    help = "Keep jobs out of scheduling until released (a running one is stopped and held)."
    verb = "hold"
