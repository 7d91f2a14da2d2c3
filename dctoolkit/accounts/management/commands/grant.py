"""./dct grant USER PATH [--rw] | --revoke USER PATH | --list [USER] [--json]   (staff only)"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from dctoolkit.accounts.grant_changes import grant_folder, revoke_folder
from dctoolkit.accounts.grants import GrantPathError
from dctoolkit.accounts.models import Grant
from dctoolkit.cli import DctCommand, caller_path, render_table


class Command(DctCommand):
    help = (
        "Grant a user a host folder: every job of theirs gets it at the same path, read-only (or read-write "
        "with --rw), and may run in it (initialdir = PATH, submit --chdir PATH). Staff only."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", nargs="?", metavar="USER", help="the user whose jobs get the folder")
        parser.add_argument("path", nargs="?", metavar="PATH", help="the folder (a relative path is from here)")
        parser.add_argument("--rw", action="store_true", help="jobs may write in the folder (default: read-only)")
        parser.add_argument("--revoke", action="store_true", help="take the grant of PATH back from USER")
        parser.add_argument("--list", dest="listing", action="store_true", help="list the grants (of USER)")

    def handle(self, *args, **options):
        staff = self.acting_user()
        if not staff.is_staff:
            raise CommandError(
                f"granting folders is for staff, and {staff.get_username()} is not staff; ask an administrator"
            )
        name, path = options["name"], options["path"]
        if options["listing"]:
            if path or options["rw"] or options["revoke"]:
                raise CommandError("--list takes at most a user name: ./dct grant --list [USER] [--json]")
            self.show(name, options["json"])
            return
        if not name or not path:
            raise CommandError("give a user and a folder: ./dct grant USER PATH [--rw], or --revoke USER PATH")
        user = get_user_model().objects.filter(username=name).first()
        if user is None:
            raise CommandError(f"no user '{name}'; './dct adduser {name}' creates one")
        text = str(caller_path(path)) if not path.startswith("/") else path
        if options["revoke"]:
            self.revoke(user, text, options["json"])
            return
        try:
            grant, new = grant_folder(user, text, options["rw"], by=staff)
        except GrantPathError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.emit_json(grant_dict(grant))
            return
        mode = "read-write" if grant.writable else "read-only"
        verb = "granted" if new else "now"
        self.stdout.write(f"{name}: {grant.path} {verb} {mode}; their jobs that start from now on get it")

    def revoke(self, user, text: str, as_json: bool) -> None:
        if not revoke_folder(user, text, by=self.acting_actor()):
            granted = ", ".join(Grant.objects.filter(user=user).values_list("path", flat=True)) or "none"
            raise CommandError(f"{user.get_username()} has no grant of {text} (their grants: {granted})")
        if as_json:
            self.emit_json({"user": user.get_username(), "path": text, "revoked": True})
            return
        self.stdout.write(f"{user.get_username()}: {text} revoked; their jobs that start from now on do not get it")

    def show(self, name: str | None, as_json: bool) -> None:
        grants = Grant.objects.select_related("user", "granted_by").order_by("user__username", "path")
        if name:
            if not get_user_model().objects.filter(username=name).exists():
                raise CommandError(f"no user '{name}'")
            grants = grants.filter(user__username=name)
        rows = [grant_dict(g) for g in grants]
        if as_json:
            self.emit_json({"grants": rows})
            return
        if not rows:
            self.stdout.write("no folders granted" + (f" to {name}" if name else ""))
            return
        lines = [["USER", "PATH", "MODE", "GRANTED BY", "CREATED"]]
        for r in rows:
            mode = "rw" if r["writable"] else "ro"
            lines.append([r["user"], r["path"], mode, r["granted_by"] or "-", r["created"][:19].replace("T", " ")])
        self.stdout.write(render_table(lines))


def grant_dict(grant: Grant) -> dict:
    """One grant as `grant --json` prints it."""
    return {
        "user": grant.user.get_username(),
        "path": grant.path,
        "writable": grant.writable,
        "granted_by": grant.granted_by.get_username() if grant.granted_by else None,
        "created": grant.created.isoformat(),
    }
