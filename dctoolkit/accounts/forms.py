"""Sign-up: a user name, an optional email, a password twice (Django's validators apply)."""

from __future__ import annotations

from django.contrib.auth.forms import UserCreationForm
from django.contrib.auth.models import User
from django.forms import EmailField

from dctoolkit.jobs.forms import style_fields


class SignupForm(UserCreationForm):
    email = EmailField(required=False, help_text="Optional: where job-end mails go by default.")

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        style_fields(self)
