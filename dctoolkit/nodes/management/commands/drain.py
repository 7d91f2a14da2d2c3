"""./dct drain NODE"""

from django.core.management.base import CommandError

from dctoolkit.cli import DctCommand
from dctoolkit.nodes.draining import set_drained
from dctoolkit.nodes.models import Node


class Command(DctCommand):
    help = "Drain a node: it finishes its running jobs and takes no new ones."
    json_option = False
    user_option = False
    drained = True

    def add_arguments(self, parser):
        parser.add_argument("node", help="node name, such as node-1")

    def handle(self, *args, **options):
        name = options["node"]
        if not set_drained(name, self.drained, actor=self.acting_actor()):
            known = ", ".join(Node.objects.values_list("name", flat=True)) or "none yet"
            raise CommandError(f"no node '{name}'; known nodes: {known}")
        word = "drained: it finishes its running jobs and takes no new ones" if self.drained else "takes jobs again"
        self.stdout.write(f"{name} {word}")
