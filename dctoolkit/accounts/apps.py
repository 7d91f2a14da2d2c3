from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "dctoolkit.accounts"
    label = "accounts"
