from django.apps import AppConfig


class NodesConfig(AppConfig):
    name = "dctoolkit.nodes"
    label = "nodes"
