"""./dct adduser NAME [--staff] [--email E]  (password on standard input)"""

from __future__ import annotations

import getpass
import sys

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

from dctoolkit.cli import DctCommand
from dctoolkit.operations import audit
from dctoolkit.operations.models import AuditAction


class Command(DctCommand):
    help = "Create an account; the password is read from standard input (prompted on a terminal)."
    json_option = False
    user_option = False

    def add_arguments(self, parser):
        parser.add_argument("name", help="user name")
        parser.add_argument("--staff", action="store_true", help="staff see every job and the admin")
        parser.add_argument("--email", default="", help="the user's email address")

    def handle(self, *args, **options):
        User = get_user_model()
        name = options["name"]
        if User.objects.filter(username=name).exists():
            raise CommandError(f"user '{name}' exists already")
        if sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("the two passwords differ; run adduser again")
        else:
            password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("no password given; pipe one in (echo PASSWORD | ./dct adduser NAME) or type it")
        user = User(username=name, email=options["email"], is_staff=options["staff"])
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise CommandError("password refused: " + " ".join(exc.messages)) from None
        user.set_password(password)
        with transaction.atomic():
            user.save()
            audit.record(self.acting_actor(), AuditAction.ADD, user, staff=user.is_staff)
        self.stdout.write(f"user '{name}' created" + (" (staff)" if options["staff"] else ""))
