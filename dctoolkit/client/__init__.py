"""dctoolkit from Python: `Client` (submit, watch, cancel, fetch results) and `Executor` (functions as jobs).

    from dctoolkit.client import Client, Executor

Nothing is imported until a name is used, so that the command line's
`dctoolkit.client.remote` (which `dct status` loads) pays for none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dctoolkit.client.api import Client, ClientError, JobFailedError, SubmissionRefusedError
    from dctoolkit.client.executor import Executor, RemoteTraceback

__all__ = ["Client", "ClientError", "Executor", "JobFailedError", "RemoteTraceback", "SubmissionRefusedError"]

_HOMES = {
    "Client": "dctoolkit.client.api",
    "ClientError": "dctoolkit.client.api",
    "JobFailedError": "dctoolkit.client.api",
    "SubmissionRefusedError": "dctoolkit.client.api",
    "Executor": "dctoolkit.client.executor",
    "RemoteTraceback": "dctoolkit.client.executor",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'dctoolkit.client' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
