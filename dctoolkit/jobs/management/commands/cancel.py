"""./dct cancel ID..."""

from dctoolkit.jobs import transitions
from dctoolkit.jobs.management.commands._control import ControlCommand


class Command(ControlCommand):
    help = "Cancel jobs (a running one is killed within about two seconds)."
    action = staticmethod(transitions.cancel)
    done_word = "cancelled (a running job stops within 2 seconds)"
    refusal = "it has already ended"
