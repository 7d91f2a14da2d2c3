"""Caps per user: at most so many running jobs and GPUs, and so many waiting, queued and held jobs; and caps
per accounting group on all the jobs charging it together (`GroupTotals`: Slurm's GrpJobs, GrpTRES=gres/gpu).

Pure (no Django): the defaults (DCT_MAX_RUNNING_JOBS, DCT_MAX_RUNNING_GPUS, DCT_MAX_QUEUED_JOBS) and a
user's own overrides (`./dct limits`) in, the caps that hold and what is left of them out.  The planner
(`jobs.scheduling.policy`) gets `Room` per user; the reason a job waits and the refusal at submit word it
with `Caps.describe`.  0 means no cap, in a setting and in an override.
"""

from __future__ import annotations

from dataclasses import dataclass

# The setting each cap defaults to, for messages.
SETTINGS = {
    "running_jobs": "DCT_MAX_RUNNING_JOBS",
    "running_gpus": "DCT_MAX_RUNNING_GPUS",
    "queued_jobs": "DCT_MAX_QUEUED_JOBS",
}


@dataclass(frozen=True)
class Caps:
    """One user's caps (None: no cap)."""

    running_jobs: int | None = None
    running_gpus: int | None = None
    queued_jobs: int | None = None

    @property
    def any_running(self) -> bool:
        return self.running_jobs is not None or self.running_gpus is not None


NO_CAPS = Caps()


def caps_of(defaults: Caps, running_jobs: int | None, running_gpus: int | None, queued_jobs: int | None) -> Caps:
    """A user's caps: each override (None: not set) replaces its default; 0 (in either) is no cap."""

    def pick(override: int | None, default: int | None) -> int | None:
        value = default if override is None else override
        return value or None

    return Caps(
        pick(running_jobs, defaults.running_jobs),
        pick(running_gpus, defaults.running_gpus),
        pick(queued_jobs, defaults.queued_jobs),
    )


@dataclass
class Room:
    """What a user may still start under their caps (None: no cap); the planner takes from it as it places."""

    jobs: int | None = None
    gpus: int | None = None

    def blocks(self, gpus: int) -> str:
        """The cap a job with `gpus` GPUs would go over ("running_jobs", "running_gpus"), or ""."""
        if self.jobs is not None and self.jobs < 1:
            return "running_jobs"
        if self.gpus is not None and gpus > self.gpus:
            return "running_gpus"
        return ""

    def take(self, gpus: int) -> None:
        if self.jobs is not None:
            self.jobs -= 1
        if self.gpus is not None:
            self.gpus -= gpus


def room(caps: Caps, running_jobs: int, running_gpus: int) -> Room:
    """What is left of `caps` while the user has `running_jobs` dispatched or running, holding `running_gpus`."""
    return Room(
        None if caps.running_jobs is None else caps.running_jobs - running_jobs,
        None if caps.running_gpus is None else caps.running_gpus - running_gpus,
    )


def held_back(caps: Caps, running_jobs: int, running_gpus: int, gpus: int, user: str, group: str = "") -> str:
    """Why a queued job with `gpus` GPUs is held back by a cap ("" when none holds it), in the reason's words;
    `group`: the user's first accounting group, whose caps may be the ones that hold."""
    which = room(caps, running_jobs, running_gpus).blocks(gpus)
    if which == "running_jobs":
        return (
            f"held back by a cap: {user} may run {caps.running_jobs} jobs at once and runs {running_jobs} "
            f"({where_set('running_jobs', user, group)})"
        )
    if which == "running_gpus":
        return (
            f"held back by a cap: {user} may hold {caps.running_gpus} GPUs at once and holds {running_gpus}; "
            f"this job needs {gpus} ({where_set('running_gpus', user, group)})"
        )
    return ""


def over_queued(caps: Caps, queued: int, adding: int, user: str, group: str = "") -> str:
    """Why a submission of `adding` jobs is refused while `user` has `queued` waiting, queued or held ("" if not)."""
    if caps.queued_jobs is None or queued + adding <= caps.queued_jobs:
        return ""
    left = max(caps.queued_jobs - queued, 0)
    return (
        f"{user} may have {caps.queued_jobs} jobs waiting, queued or held and has {queued}; this submission adds "
        f"{adding}, so at most {left} more fit ({where_set('queued_jobs', user, group)}); nothing was queued"
    )


def where_set(cap: str, user: str, group: str = "") -> str:
    """Where a cap of `user` comes from, for messages: the setting, their group's (`--group`), their own."""
    if group:
        return f"{SETTINGS[cap]}, ./dct limits --group {group} or ./dct limits {user}"
    return f"{SETTINGS[cap]} or ./dct limits {user}"


@dataclass(frozen=True)
class GroupTotals:
    """One group's caps on all the jobs charging it together (None: no cap), and what those hold now:
    `runs` jobs dispatched or running, holding `holds` GPUs."""

    name: str
    running_jobs: int | None
    running_gpus: int | None
    runs: int = 0
    holds: int = 0

    def room(self) -> Room:
        return room(Caps(self.running_jobs, self.running_gpus), self.runs, self.holds)


def held_back_by_group(totals: GroupTotals, gpus: int) -> str:
    """Why a queued job with `gpus` GPUs charging the group is held back by its total caps ("" when not)."""
    which = totals.room().blocks(gpus)
    name = totals.name
    if which == "running_jobs":
        return (
            f"held back by a cap: group {name} may run {totals.running_jobs} jobs at once, all members together, "
            f"and runs {totals.runs} (./dct limits --group {name} --total-running-jobs N)"
        )
    if which == "running_gpus":
        return (
            f"held back by a cap: group {name} may hold {totals.running_gpus} GPUs at once, all members together, "
            f"and holds {totals.holds}; this job needs {gpus} (./dct limits --group {name} --total-running-gpus N)"
        )
    return ""
