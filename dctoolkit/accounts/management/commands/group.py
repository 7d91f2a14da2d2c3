"""./dct group [--json] | group add NAME [--share S] | group member NAME USER... [--remove]
| group remove NAME [USER...]"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from dctoolkit.accounts.group_changes import (
    GroupError,
    add_group,
    add_members,
    delete_group,
    remove_members,
    unknown_group,
)
from dctoolkit.accounts.models import Group, Membership
from dctoolkit.cli import DctCommand, holds_secret_key, render_table


class Command(DctCommand):
    help = (
        "Accounting groups: fair share serves groups by their usage over their share first, then users within "
        "them. 'group add NAME [--share S]' makes one (or changes its share), 'group member NAME USER...' adds "
        "users (--remove, or 'group remove NAME USER...', takes them out), 'group remove NAME' deletes a group no "
        "job still to run charges; a user's jobs charge their first group unless accounting_group = NAME "
        "says otherwise. Without a subcommand, lists the groups. Changing them is for operators."
    )
    user_option = False

    def add_arguments(self, parser):
        parser.add_argument(
            "action", nargs="?", choices=["add", "member", "remove"], help="add | member | remove (none: list)"
        )
        parser.add_argument("name", nargs="?", metavar="NAME", help="the group")
        parser.add_argument(
            "users",
            nargs="*",
            metavar="USER",
            help="member, remove: the users to add or take out (remove without them: delete the group)",
        )
        parser.add_argument("--share", type=float, default=None, metavar="S", help="add: the group's share")
        parser.add_argument("--remove", action="store_true", help="member: take the users out of the group")

    def handle(self, *args, **options):
        action, name = options["action"], options["name"]
        if action is None:
            self.show(options["json"])
            return
        if not name:
            raise CommandError(
                f"give the group: ./dct group {action} NAME"
                + {"member": " USER...", "remove": " [USER...]"}.get(action, "")
            )
        if not holds_secret_key():
            raise CommandError("only an operator (who can read the server's secret key) changes accounting groups")
        try:
            if action == "add":
                self.add(name, options)
            elif action == "remove" and not options["users"]:
                self.delete(name, options)
            else:
                self.member(name, {**options, "remove": options["remove"] or action == "remove"})
        except GroupError as exc:
            raise CommandError(str(exc)) from None

    def add(self, name: str, options: dict) -> None:
        if options["users"] or options["remove"]:
            raise CommandError("group add takes a name and --share; add members with ./dct group member NAME USER...")
        group, new = add_group(name, options["share"], by=self.acting_actor())
        if options["json"]:
            self.emit_json(group_dict(group))
            return
        self.stdout.write(f"group '{group.name}' {'made' if new else 'now has'} share {group.share:g}")

    def member(self, name: str, options: dict) -> None:
        if options["share"] is not None:
            raise CommandError("--share goes with group add: ./dct group add NAME --share S")
        group = Group.objects.filter(name=name).first()
        if group is None:
            raise CommandError(unknown_group(name))
        if not options["users"]:
            raise CommandError(f"give the users: ./dct group member {name} USER...")
        found = get_user_model().objects.in_bulk(options["users"], field_name="username")
        users = [found[name] for name in dict.fromkeys(options["users"]) if name in found]  # in the order given
        missing = sorted(set(options["users"]) - {u.get_username() for u in users})
        if missing:
            raise CommandError(f"no user {', '.join(repr(m) for m in missing)}; ./dct adduser NAME makes one")
        if options["remove"]:
            changed = remove_members(group, users, by=self.acting_actor())
            verb, none = "removed from", "none of them was in"
        else:
            changed = add_members(group, users, by=self.acting_actor())
            verb, none = "added to", "all of them are in"
        if options["json"]:
            self.emit_json(group_dict(group))
            return
        if changed:
            self.stdout.write(f"{', '.join(changed)} {verb} group '{name}'")
        else:
            self.stdout.write(f"nothing changed: {none} group '{name}'")

    def delete(self, name: str, options: dict) -> None:
        if options["share"] is not None or options["remove"]:
            raise CommandError(f"group remove {name} deletes the group and takes no options but --json")
        members = delete_group(name, by=self.acting_actor())
        if options["json"]:
            self.emit_json({"group": name, "deleted": True, "members": members})
            return
        self.stdout.write(f"group '{name}' deleted" + (f"; {', '.join(members)} no longer in it" if members else ""))

    def show(self, as_json: bool) -> None:
        rows = [group_dict(g) for g in Group.objects.order_by("name")]
        if as_json:
            self.emit_json({"groups": rows})
            return
        if not rows:
            self.stdout.write("no groups; ./dct group add NAME [--share S] makes one")
            return
        lines = [["GROUP", "SHARE", "MEMBERS"]]
        lines += [[r["group"], f"{r['share']:g}", ", ".join(r["members"]) or "-"] for r in rows]
        self.stdout.write(render_table(lines))


def group_dict(group: Group) -> dict:
    """One group as `group --json` prints it: members in the order they joined."""
    members = Membership.objects.filter(group=group).order_by("id").values_list("user__username", flat=True)
    return {"group": group.name, "share": group.share, "members": list(members)}
