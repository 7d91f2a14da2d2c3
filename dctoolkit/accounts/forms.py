"""Sign-up: a user name, an optional email, a password twice (Django's validators apply)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.forms import EmailField

from dctoolkit.jobs.web.forms import style_fields


class SignupForm(UserCreationForm):
    email = EmailField(required=False, help_text="Optional: where job-end mails go by default.")

    # mypy: the stubs declare no UserCreationForm.Meta; Django defines it.
    class Meta(UserCreationForm.Meta):  # type: ignore[name-defined]
        model = User
        fields = ("username", "email")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        style_fields(self)


def lockout_message() -> str:
    """What a person locked out by the log-in throttle reads."""
    minutes = round(settings.AXES_COOLOFF_TIME * 60)
    return (
        f"Too many failed log-ins for this user name from your address: log-in is refused for {minutes} minutes. "
        "Wait, then try again; if you forgot your password, ask the staff to reset it."
    )


class LoginForm(AuthenticationForm):
    """Django's log-in form; when django-axes has locked this user name and address, it says so
    (`locked_out` holds the message the page shows)."""

    locked_out = ""

    def clean(self) -> dict:
        try:
            return super().clean()
        except ValidationError:
            if getattr(self.request, "axes_locked_out", False):
                self.locked_out = lockout_message()
                raise ValidationError(self.locked_out, code="locked_out") from None
            raise
