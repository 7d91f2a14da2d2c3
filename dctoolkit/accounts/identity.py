"""Who a command acts for: the caller's Unix account, or `--user NAME` for an operator.

Plain Python (no Django), so that the command line's fast path
(`dctoolkit/commandline.py`) and the Django commands (`dctoolkit/cli.py`)
share one rule.  An operator is whoever holds the server's secret key.
"""

from __future__ import annotations

import getpass
import os
import pwd
from pathlib import Path


class IdentityError(Exception):
    """`--user` given by someone who may not act as another user; the message is for a person."""


def os_user_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "user")


def real_user_name() -> str:
    """The name of the Unix account this process runs as (not $USER, which anyone sets)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid{os.getuid()}"


def acting_user_name(requested: str | None, operator: bool, var_dir: Path) -> str:
    """The user name a command acts for.

    `requested` is `--user NAME` (or None); `operator` says whether this
    process holds the server's secret key.  Only an operator may act as
    another user, or name themself through $USER or $LOGNAME.  Raises
    IdentityError for `--user` from anyone else.
    """
    if requested and not operator:
        raise IdentityError(
            f"--user {requested}: acting as another user is for the server's operators, who can read "
            f"its secret key ({var_dir / 'secret_key'} or SECRET_KEY), and you ({real_user_name()}) "
            "cannot; run the command without --user to act as yourself, or use your own API token "
            "(DCT_SERVER and DCT_TOKEN)"
        )
    if requested:
        return requested
    return os_user_name() if operator else real_user_name()
