from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "dctoolkit.jobs"
    label = "jobs"
