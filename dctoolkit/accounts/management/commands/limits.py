"""./dct limits NAME [--group] [--max-running-jobs N] [--max-running-gpus N] [--max-queued-jobs N] [--default]
[--json]; with --group also [--total-running-jobs N] [--total-running-gpus N]"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import transaction

from dctoolkit.accounts.limits import SETTINGS, Caps
from dctoolkit.accounts.models import Account, Group
from dctoolkit.accounts.usage import account_caps, default_caps, first_groups, group_caps
from dctoolkit.cli import DctCommand, holds_secret_key
from dctoolkit.operations import audit
from dctoolkit.operations.models import AuditAction

# option -> Account field
FIELDS = {
    "max_running_jobs": "max_running_jobs",
    "max_running_gpus": "max_running_gpus",
    "max_queued_jobs": "max_queued_jobs",
}
# option -> Group field: caps on all the jobs charging the group together (Slurm's GrpJobs, GrpTRES=gres/gpu)
TOTALS = {"total_running_jobs": "total_running_jobs", "total_running_gpus": "total_running_gpus"}


class Command(DctCommand):
    help = (
        "A user's caps: running jobs, running GPUs, and waiting, queued or held jobs (DCT_MAX_RUNNING_JOBS, "
        "DCT_MAX_RUNNING_GPUS, DCT_MAX_QUEUED_JOBS unless set here; 0: no cap for this user). Without options, "
        "shows them; setting them is for operators. With --group, NAME is an accounting group: its caps hold for "
        "each member whose first group it is, unless the member has their own; --total-running-jobs and "
        "--total-running-gpus cap all the jobs charging the group together (0: no such cap)."
    )
    user_option = False

    def add_arguments(self, parser):
        parser.add_argument("name", help="the user (the group, with --group)")
        parser.add_argument("--group", action="store_true", help="NAME is an accounting group (./dct group)")
        for option in FIELDS:
            parser.add_argument(f"--{option.replace('_', '-')}", dest=option, type=_count, default=None, metavar="N")
        for option in TOTALS:
            parser.add_argument(
                f"--{option.replace('_', '-')}",
                dest=option,
                type=_count,
                default=None,
                metavar="N",
                help="with --group: at most N for all the jobs charging the group together (0: no such cap)",
            )
        parser.add_argument("--default", action="store_true", help="drop this user's own caps: the settings hold")

    def handle(self, *args, **options):
        if options["group"]:
            self.handle_group(options)
            return
        given = [f"--{o.replace('_', '-')}" for o in TOTALS if options[o] is not None]
        if given:
            raise CommandError(f"{', '.join(given)} caps a group: ./dct limits --group NAME {given[0]} N")
        user = get_user_model().objects.filter(username=options["name"]).first()
        if user is None:
            raise CommandError(f"no user '{options['name']}'; ./dct usage lists the users with jobs")
        changes = {field: options[option] for option, field in FIELDS.items() if options[option] is not None}
        if options["default"] and changes:
            raise CommandError("--default drops this user's own caps; give it alone, or only --max-... options")
        if changes or options["default"]:
            if not holds_secret_key():
                raise CommandError("only an operator (who can read the server's secret key) sets caps")
            with transaction.atomic():
                account, _ = Account.objects.get_or_create(user=user)
                before = {field: getattr(account, field) for field in FIELDS.values()}
                for field in FIELDS.values():
                    if options["default"]:
                        setattr(account, field, None)
                    elif field in changes:
                        setattr(account, field, changes[field])
                account.save(update_fields=list(FIELDS.values()))
                after = {field: getattr(account, field) for field in FIELDS.values()}
                if before != after:
                    audit.record(self.acting_actor(), AuditAction.LIMITS, user, before=before, after=after)
        account = Account.objects.filter(user=user).first()
        first = first_groups([user.pk])
        group = Group.objects.filter(id=first[user.pk]).first() if first else None
        caps = account_caps(account, group_caps(group, default_caps()))
        own = {field: getattr(account, field) if account else None for field in FIELDS.values()}
        if options["json"]:
            self.emit_json({"user": user.username, **_document(caps), "own": own})
            return
        for key, setting in SETTINGS.items():
            value = getattr(caps, key)
            where = f"./dct limits {user.username}" if own[f"max_{key}"] is not None else setting
            if own[f"max_{key}"] is None and group is not None and getattr(group, f"max_{key}") is not None:
                where = f"./dct limits --group {group.name}"
            self.stdout.write(f"max_{key}: {value if value is not None else 'no cap'} ({where})")

    def handle_group(self, options: dict) -> None:
        group = Group.objects.filter(name=options["name"]).first()
        if group is None:
            known = ", ".join(Group.objects.order_by("name").values_list("name", flat=True)) or "none"
            raise CommandError(f"no group '{options['name']}' (groups: {known}); ./dct group add NAME makes one")
        fields = {**FIELDS, **TOTALS}
        changes = {field: options[option] for option, field in fields.items() if options[option] is not None}
        if options["default"] and changes:
            raise CommandError("--default drops this group's own caps; give it alone, or only --max-... options")
        if changes or options["default"]:
            if not holds_secret_key():
                raise CommandError("only an operator (who can read the server's secret key) sets caps")
            with transaction.atomic():
                group = Group.objects.select_for_update().get(pk=group.pk)
                before = {field: getattr(group, field) for field in fields.values()}
                for field in fields.values():
                    if options["default"] or field in changes:
                        setattr(group, field, None if options["default"] else changes[field])
                group.save(update_fields=list(fields.values()))
                after = {field: getattr(group, field) for field in fields.values()}
                if before != after:
                    audit.record(
                        self.acting_actor(), AuditAction.LIMITS, ("group", group.name), before=before, after=after
                    )
        caps = group_caps(group, default_caps())
        own = {field: getattr(group, field) for field in FIELDS.values()}
        totals = {field: getattr(group, field) or None for field in TOTALS.values()}
        if options["json"]:
            self.emit_json({"group": group.name, **_document(caps), **totals, "own": own})
            return
        for key, setting in SETTINGS.items():
            value = getattr(caps, key)
            where = f"./dct limits --group {group.name}" if own[f"max_{key}"] is not None else setting
            self.stdout.write(f"max_{key}: {value if value is not None else 'no cap'} ({where}; each member)")
        for field, value in totals.items():
            shown = value if value is not None else "no cap"
            self.stdout.write(f"{field}: {shown} (./dct limits --group {group.name}; all members together)")


def _document(caps: Caps) -> dict:
    return {f"max_{key}": getattr(caps, key) for key in SETTINGS}


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 10**9:
        raise CommandError(f"'{text}' is not a count; give a whole number, 0 for no cap")
    return value
