"""The system checks of a machine that runs a node: bubblewrap, when jobs must be fenced; a scratch folder.

Registered by the nodes app (apps.py), so `./dct check` on any machine and a
node worker's start (`dctoolkit.checks.refuse_to_start`) both run it.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from dctoolkit.checks import TAG, unwritable
from dctoolkit.nodes.worker.sandbox import bwrap_path


@register(TAG)
def check_sandbox_available(app_configs=None, **kwargs) -> list[CheckMessage]:
    """DCT_REQUIRE_SANDBOX=1 without bubblewrap: a node on this machine would take no jobs."""
    if not settings.DCT_REQUIRE_SANDBOX or bwrap_path():
        return []
    return [
        Warning(
            f"DCT_REQUIRE_SANDBOX=1 but bubblewrap is not found ({settings.DCT_BWRAP or 'bwrap on PATH'}): "
            "a node started on this machine takes no jobs.",
            hint="Install it (Debian: apt-get install bubblewrap) on every machine that runs a node, or set "
            "DCT_BWRAP to its path; a machine that runs only the server needs none.",
            id="dctoolkit.W001",
        )
    ]


@register(TAG)
def check_scratch_writable(app_configs=None, **kwargs) -> list[CheckMessage]:
    """DCT_SCRATCH (or the folder it will be made in) must be writable: every job runs in a folder there."""
    scratch = Path(settings.DCT_SCRATCH)
    problem = unwritable(scratch)
    if not problem:
        return []
    return [
        Warning(
            f"DCT_SCRATCH ({scratch}) {problem} a folder this process (uid {os.getuid()}) can write: a node "
            "started on this machine would fail every job it is sent.",
            hint=f"Make {scratch} on each node's local disk and give it to the account the node runs as (chown), "
            "or point DCT_SCRATCH at a folder it owns; a machine that runs only the server needs none.",
            id="dctoolkit.W003",
        )
    ]


@register(TAG)
def check_desktop_settings(app_configs=None, **kwargs) -> list[CheckMessage]:
    """A desktop node's settings (DCT_NODE_POLICY, DCT_IDLE_MINUTES, DCT_IDLE_SOURCE, DCT_SUSPEND_MAX,
    DCT_NODE_OWNER: nodes/worker/desktop.py) must be readable: every bad one is named, and a node refuses
    to start with any."""
    return [
        Error(problem, hint="See 'Desktop nodes' in the README.", id="dctoolkit.E010")
        for problem in settings.DCT_DESKTOP.problems
    ]
