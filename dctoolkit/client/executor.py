"""`Executor`: a concurrent.futures.Executor whose calls run as dctoolkit jobs.

    with Executor(cpus=2, memory="2GB") as pool:
        print(pool.submit(pow, 2, 10).result())          # 1024, computed on a node
        print(list(pool.map(len, ["a", "bb"], chunksize=2)))

Each call is pickled with cloudpickle and staged as a job with a small runner
(dctoolkit/client/jobside.py) and a copy of cloudpickle, so the job needs
nothing of the project.  The Future gets the function's value, or its
exception re-raised here with the remote traceback attached (as __cause__, a
RemoteTraceback, and as a note); that job ends `failed`.  One thread watches
every pending job, with growing pauses (as Client.wait).
"""

from __future__ import annotations

import concurrent.futures
import io
import itertools
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from time import monotonic
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from dctoolkit.client import jobside
from dctoolkit.client.api import FINAL_STATES, Client, ClientError, JobFailedError, poll_delays

RUNNER_NAME = "dct_call.py"
# The states in which a job's call has begun: its Future is then running, and can no longer be cancelled.
STARTED_STATES = ("dispatched", "running", "suspended", *FINAL_STATES)


class RemoteTraceback(Exception):  # noqa: N818 (a traceback, not an error; as concurrent.futures names it)
    """The traceback of an exception raised inside a job (the `__cause__` of the exception re-raised)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def submission_text(name: str, cpus: int, memory: str, gpus: int, time_limit: str | None) -> str:
    """The submission file of one call."""
    lines = [
        f"executable = {RUNNER_NAME}",
        f"arguments = {sys.version_info[0]}.{sys.version_info[1]}",
        f"data = {jobside.CALL_FILE}, {jobside.CLOUDPICKLE_ZIP}",
        f"name = {name}",
        f"request_cpus = {cpus}",
        f"request_memory = {memory}",
    ]
    if gpus:
        lines.append(f"request_gpus = {gpus}")
    if time_limit:
        lines.append(f"max_runtime = {time_limit}")
    return "\n".join([*lines, "queue", ""])


def cloudpickle_zip() -> bytes:
    """This Python's cloudpickle package as a zip (pure Python: importable from the zip by zipimport)."""
    package = Path(cloudpickle.__file__).parent
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(package.glob("*.py")):
            z.write(path, f"cloudpickle/{path.name}")
    return buffer.getvalue()


def outcome_of(data: bytes | None, job: dict) -> Any:
    """The call's value from its result file; raises the call's exception (traceback attached), or
    JobFailedError when the job ended without a result."""
    if data is None:
        reason = job.get("reason") or ""
        exit_code = job.get("exit_code")
        raise JobFailedError(
            f"job {job['id']} ended {job['state']}"
            + (f" (exit status {exit_code})" if exit_code is not None else "")
            + (f": {reason}" if reason and not reason.startswith("exit status") else "")
            + " without a result; './dct logs "
            + f"{job['id']} --stderr' shows what it said",
            job,
        )
    outcome = cloudpickle.loads(data)
    if outcome[0] == "value":
        return outcome[1]
    _, exc, text = outcome
    exc.__cause__ = RemoteTraceback(text)
    exc.add_note(f"raised in dctoolkit job {job['id']}; its traceback:\n{text.rstrip()}")
    raise exc


class Executor(concurrent.futures.Executor):
    """Runs calls as dctoolkit jobs, each asking `cpus`, `memory` (such as "1GB"), `gpus`, `time` (a
    wall-time limit such as "10m"), on `client` (default: Client(), remote when DCT_SERVER is set)."""

    def __init__(self, cpus: int = 1, memory: str = "1GB", gpus: int = 0, time: str | None = None,
                 name: str = "executor", client: Client | None = None) -> None:  # fmt: skip
        self.client = client or Client()
        self.cpus, self.memory, self.gpus, self.time_limit, self.name = cpus, memory, gpus, time, name
        self._pending: dict[int, concurrent.futures.Future] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._shut = False
        self._watcher: threading.Thread | None = None
        self._zip = cloudpickle_zip()
        self._runner = Path(jobside.__file__).read_bytes()

    # --- concurrent.futures.Executor ---------------------------------------------
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        return self._submit(("call", fn, args, kwargs), self._job_name(fn))

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None,
            chunksize: int = 1) -> Iterator[Any]:  # fmt: skip
        """fn over the items, one job per item (chunksize=1) or per `chunksize` items; values in order.

        Every job is submitted before this returns; `timeout` counts from then, as concurrent.futures'.
        """
        if chunksize < 1:
            raise ValueError("chunksize must be 1 or more")
        calls = list(zip(*iterables, strict=False))
        if chunksize == 1:
            futures = [self.submit(fn, *args) for args in calls]
        else:
            name = self._job_name(fn) + ".chunk"
            futures = [self._submit(("chunk", fn, chunk), name) for chunk in chunked(calls, chunksize)]
        deadline = None if timeout is None else monotonic() + timeout

        def values() -> Iterator[Any]:
            try:
                for future in futures:
                    left = None if deadline is None else deadline - monotonic()
                    got = future.result(left)
                    yield from (got if chunksize > 1 else [got])
            finally:
                for future in futures:
                    future.cancel()

        return values()

    def _submit(self, payload: tuple, name: str) -> concurrent.futures.Future:
        """Stage the runner, the pickled payload and cloudpickle as one job; its Future."""
        with self._lock:
            if self._shut:
                raise RuntimeError("cannot submit after shutdown")
        with tempfile.TemporaryDirectory(prefix="dct-call-") as tmp:
            folder = Path(tmp)
            (folder / RUNNER_NAME).write_bytes(self._runner)
            (folder / jobside.CALL_FILE).write_bytes(cloudpickle.dumps(payload))
            (folder / jobside.CLOUDPICKLE_ZIP).write_bytes(self._zip)
            text = submission_text(name, self.cpus, self.memory, self.gpus, self.time_limit)
            names = (RUNNER_NAME, jobside.CALL_FILE, jobside.CLOUDPICKLE_ZIP)
            (job,) = self.client.submit(text, files={n: folder / n for n in names})
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.job_id = job["id"]  # type: ignore[attr-defined]
        with self._lock:
            self._pending[job["id"]] = future
            self._start_watcher()
        self._wake.set()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shut = True
            pending = dict(self._pending)
        if cancel_futures:
            for job_id, future in pending.items():
                if future.cancel():  # not yet started: the job goes too
                    self._cancel_job(job_id)
                    with self._lock:
                        self._pending.pop(job_id, None)
        self._wake.set()
        if wait and self._watcher is not None:
            self._watcher.join()

    # --- the watcher -----------------------------------------------------------------
    def _start_watcher(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._watcher = threading.Thread(target=self._watch, name="dct-executor", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        delays = poll_delays()
        while True:
            with self._lock:
                pending = dict(self._pending)
                if not pending and self._shut:
                    return
            changed = any([self._look_safely(job_id, future) for job_id, future in pending.items()])
            if changed:
                delays = poll_delays()  # something moved: look again soon
            self._wake.wait(next(delays))
            self._wake.clear()

    def _look_safely(self, job_id: int, future: concurrent.futures.Future) -> bool:
        """_look, with anything unexpected given to that Future rather than ending the watcher (every
        other Future would then wait for ever)."""
        try:
            return self._look(job_id, future)
        except Exception as exc:
            return self._finish(job_id, future, exc)

    def _look(self, job_id: int, future: concurrent.futures.Future) -> bool:
        """One look at one job; whether its Future changed."""
        try:
            job = self.client.job(job_id)
        except ClientError as exc:
            return self._finish(job_id, future, exc)
        begun = job["state"] in STARTED_STATES and not future.running() and not future.done()
        if begun and not future.set_running_or_notify_cancel():
            self._cancel_job(job_id)  # cancelled here before it began
            return self._finish(job_id, future, None)
        if job["state"] not in FINAL_STATES:
            return False
        try:
            return self._finish(job_id, future, ("value", outcome_of(self._result(job), job)))
        except BaseException as exc:  # the call's own exception, for the Future
            return self._finish(job_id, future, exc)

    def _result(self, job: dict) -> bytes | None:
        if job["state"] == "cancelled" or not job.get("started_at"):
            return None
        return self.client.result_file(job["id"], jobside.RESULT_FILE)

    def _finish(self, job_id: int, future: concurrent.futures.Future, outcome: Any) -> bool:
        with self._lock:
            self._pending.pop(job_id, None)
        if future.done():
            return True
        if not future.running() and not future.set_running_or_notify_cancel():
            return True
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        elif outcome is not None:
            future.set_result(outcome[1])
        return True

    def _cancel_job(self, job_id: int) -> None:
        try:
            self.client.cancel(job_id)
        except ClientError:
            pass  # it ended meanwhile: nothing to cancel

    def _job_name(self, fn: Callable[..., Any]) -> str:
        label = getattr(fn, "__name__", None) or type(fn).__name__
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:60]
        return f"{self.name}.{safe}" if safe else self.name


def chunked(items: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    """The argument tuples in lists of `size` (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
