from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Running it as a lab's service; a Django app for its one table, the audit trail (models.AuditEvent)."""

    name = "dctoolkit.operations"
    label = "operations"
