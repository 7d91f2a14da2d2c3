"""./dct release ID..."""

from dctoolkit.jobs import transitions
from dctoolkit.jobs.management.commands._control import ControlCommand


class Command(ControlCommand):
    help = "Put held jobs back in the queue."
    action = staticmethod(transitions.release)
    done_word = "released"
    refusal = "only held jobs can be released"
