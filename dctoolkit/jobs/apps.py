from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "dctoolkit.jobs"
    label = "jobs"

    def ready(self) -> None:
        from dctoolkit import checks  # noqa: F401  (registers the deployment checks)
