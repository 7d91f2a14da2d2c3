from django.apps import AppConfig
from django.db.backends.signals import connection_created


class AccountsConfig(AppConfig):
    name = "dctoolkit.accounts"
    label = "accounts"

    def ready(self) -> None:
        from dctoolkit.accounts.usage import register_sqlite_functions

        connection_created.connect(register_sqlite_functions, dispatch_uid="dct_sqlite_functions")
