from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "dctoolkit.nodes"
    label = "nodes"

    def ready(self) -> None:
        from dctoolkit.nodes.worker import checks  # noqa: F401  (registers the node's system check)
