"""./dct resume NODE"""

from dctoolkit.jobs.scheduling.wake import wake_scheduler
from dctoolkit.nodes.management.commands.drain import Command as DrainCommand


class Command(DrainCommand):
    help = "Undo drain: the node takes new jobs again."
    drained = False

    def handle(self, *args, **options):
        super().handle(*args, **options)
        wake_scheduler()
