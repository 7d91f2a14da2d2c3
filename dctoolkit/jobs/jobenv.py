"""Which environment variables a job may set, and how much it may pass: one rule for the parser and the node.

Pure: no Django, no I/O.  The submission parser refuses a bad name with a
located message; the node checks again before it starts anything (a job row
written by an older server, or straight into the database, gets no further),
so no loader variable ever reaches a process on the host.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

# Environment and arguments of one job together, in bytes (UTF-8): enough for
# any real job, small enough that parsing, storing and sending stay cheap.
MAX_ENV_AND_ARGS_BYTES = 64 * 1024

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# glibc's own list of variables it ignores for setuid programs (UNSECURE_ENVVARS
# in its sysdeps/generic/unsecvars.h): each makes a program load or run code,
# or read files, that its caller named.  LD_ and MALLOC_ are refused whole
# (new loader variables appear with glibc releases).  TMPDIR is left to jobs:
# the node sets it, and no host program ever sees a job's variables.
REFUSED_PREFIXES = ("LD_", "MALLOC_", "GLIBC_")
REFUSED_NAMES = frozenset(
    {
        "GCONV_PATH",
        "GETCONF_DIR",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "LOCPATH",
        "NIS_PATH",
        "NLSPATH",
        "RESOLV_HOST_CONF",
        "RES_OPTIONS",
        "TZDIR",
    }
)


def env_name_problem(name: str) -> str | None:
    """None when a job may set variable `name`, else why not (a sentence for the job's owner)."""
    if not NAME.match(name):
        return f"'{name}' is not a variable name (letters, digits and '_', not starting with a digit)"
    upper = name.upper()
    if upper in REFUSED_NAMES or upper.startswith(REFUSED_PREFIXES):
        return (
            f"'{name}' may not be set by a job: it makes programs load code the job names; "
            "set it inside your job's script instead"
        )
    return None


def env_and_args_bytes(env: Mapping[str, str], arguments: Iterable[str]) -> int:
    """How many bytes a job's environment (NAME=value) and arguments take, as the limit counts them."""
    size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())
    return size + sum(len(a.encode()) + 1 for a in arguments)


def job_env_problem(env: Mapping[str, str], arguments: Iterable[str] = ()) -> str | None:
    """None when a stored job environment and arguments may be used, else the first reason not to."""
    for name in env:
        problem = env_name_problem(name)
        if problem:
            return f"environment: {problem}"
    size = env_and_args_bytes(env, arguments)
    if size > MAX_ENV_AND_ARGS_BYTES:
        return f"environment and arguments take {size:,} bytes; the limit is {MAX_ENV_AND_ARGS_BYTES:,}"
    return None


# Variables a Slurm or PBS batch script reads that only the node knows (the job id, the node's name, the
# job's folder as the job sees it): the submission sets them empty and the node fills them in.
RUNTIME_VARIABLES: dict[str, tuple[str, ...]] = {
    "slurm": (
        "SLURM_JOB_ID",
        "SLURM_JOBID",
        "SLURM_SUBMIT_DIR",
        "SLURM_JOB_NODELIST",
        "SLURM_NODELIST",
        "SLURMD_NODENAME",
    ),
    "pbs": ("PBS_JOBID", "PBS_O_WORKDIR", "PBS_O_HOST", "PBS_SERVER"),
}
_RUNTIME_VALUES = {
    "SLURM_JOB_ID": "job",
    "SLURM_JOBID": "job",
    "PBS_JOBID": "job",
    "SLURM_SUBMIT_DIR": "workdir",
    "PBS_O_WORKDIR": "workdir",
    "SLURM_JOB_NODELIST": "node",
    "SLURM_NODELIST": "node",
    "SLURMD_NODENAME": "node",
    "PBS_O_HOST": "node",
    "PBS_SERVER": "node",
    "BASH_ENV": "srun",
}
# The file defining `srun` for a batch script that calls it (intake.batch.SRUN_HELPER), in the job's folder.
SRUN_HELPER = ".dct_srun.sh"


def fill_runtime(env: Mapping[str, str], *, job_id: int, node: str, workdir: str) -> dict[str, str]:
    """`env` with the batch-script variables it sets empty (RUNTIME_VARIABLES) given their values here."""
    values = {"job": str(job_id), "node": node, "workdir": workdir, "srun": f"{workdir}/{SRUN_HELPER}"}
    return {k: values[_RUNTIME_VALUES[k]] if k in _RUNTIME_VALUES and v == "" else v for k, v in env.items()}
