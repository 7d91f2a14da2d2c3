"""./dct hold ID..."""

from dctoolkit.jobs import transitions
from dctoolkit.jobs.management.commands._control import ControlCommand


class Command(ControlCommand):
    help = "Keep jobs out of scheduling until released (a running one is stopped and held)."
    action = staticmethod(transitions.hold)
    done_word = "held"
    refusal = "only queued, dispatched or running jobs can be held"
