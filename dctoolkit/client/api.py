"""`Client`: dctoolkit from Python, against a server (the HTTP API) or this machine's own database.

    client = Client()                   # DCT_SERVER and DCT_TOKEN set: remote; else local
    jobs = client.submit("job.txt")     # the job objects, as `submit --json` prints them
    done = client.wait(jobs[0]["id"])   # the final job object
    client.results(done["id"], "out/")

Remote calls go through `dctoolkit.client.remote` (standard library only, no
ORM).  The local backend (`dctoolkit.jobs.localclient`) starts Django and is
imported only when no server is given.  Every refusal is a ClientError whose
text is the server's message; a bad submission is a SubmissionRefusedError
whose text is the parser's `FILE:LINE: ...` lines.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from dctoolkit.client import remote
from dctoolkit.jobs.intake.parse import SubmissionError, SubmitFacts, parse_submission

# The job states after which nothing changes (as dctoolkit.jobs.models.FINAL_STATES, without the ORM).
FINAL_STATES = ("succeeded", "failed", "cancelled")
# wait(): the first pause between two looks at a job, how much longer each next one is, and the longest.
FIRST_POLL_SECONDS = 0.2
POLL_GROWTH = 1.5
MAX_POLL_SECONDS = 5.0
# Job ids per `GET /api/jobs/?id=...` (the server's limit, dctoolkit.jobs.web.history.MAX_IDS).
MAX_IDS_PER_REQUEST = 1000
# A submission given as text is told under this name in its error messages.
TEXT_SOURCE_NAME = "submission"


class ClientError(Exception):
    """dctoolkit refused or could not be reached; the message (the server's) is for a person."""


class SubmissionRefusedError(ClientError):
    """A bad submission: the message is the parser's, `FILE:LINE: what is wrong` for every problem."""


class JobFailedError(ClientError):
    """A job ended without the result it was meant to give (the Executor's jobs)."""

    def __init__(self, message: str, job: dict) -> None:
        super().__init__(message)
        self.job = job


class Backend(Protocol):
    """What the Client needs from where the jobs live (a server, or this machine's database)."""

    def submit(self, text: str, source_name: str, folder: Path, files: dict[str, Path] | None) -> list[dict]: ...
    def job(self, job_id: int) -> dict: ...
    def jobs(self, ids: list[int]) -> list[dict]: ...
    def cancel(self, job_id: int) -> dict: ...
    def results(self, job_id: int, dest: Path) -> Path: ...


def poll_delays(
    first: float = FIRST_POLL_SECONDS, growth: float = POLL_GROWTH, longest: float = MAX_POLL_SECONDS
) -> Iterator[float]:
    """The pauses between looks at a job: short at first (most jobs are short), growing to `longest`."""
    delay = first
    while True:
        yield delay
        delay = min(delay * growth, longest)


def read_submission(path_or_text: str | os.PathLike[str]) -> tuple[str, str, Path]:
    """(text, the name errors are told under, the folder its relative paths start from).

    A Path, or a one-line string naming an existing file, is a submission file; anything else is the
    submission's text itself (its paths are relative to the current folder).
    """
    if isinstance(path_or_text, os.PathLike) or ("\n" not in path_or_text and Path(path_or_text).is_file()):
        path = Path(path_or_text).expanduser()
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ClientError(f"{path}: cannot read the submission file ({exc})") from None
        return text, str(path_or_text), path.resolve().parent
    return str(path_or_text), TEXT_SOURCE_NAME, Path.cwd()


def named_files(text: str, source_name: str, folder: Path) -> dict[str, Path]:
    """The files a submission names (executable, inputs, item lists), found beside it, by the name the
    server matches uploads with.  Raises SubmissionRefusedError for a submission that does not parse."""
    return named_uploads(text, source_name, folder)[0]


def named_uploads(text: str, source_name: str, folder: Path) -> tuple[dict[str, Path], list[str]]:
    """`named_files`, and the `dir/` inputs that hold no file, as the server is told of them
    (`remote.upload_folders`: no file brings such a folder)."""

    def read_text(name: str) -> str | None:
        target = folder / os.path.expanduser(name)
        return target.read_text(errors="replace") if target.is_file() else None

    def names() -> list[tuple[str, bool]]:
        return [(entry.name, entry.is_dir()) for entry in os.scandir(folder)]

    def listdir(name: str) -> list[tuple[str, bool]] | None:
        target = folder / os.path.expanduser(name)
        return [(entry.name, entry.is_dir()) for entry in os.scandir(target)] if target.is_dir() else None

    try:
        parsed = parse_submission(text, source_name, facts=SubmitFacts(read_text, names, dict(os.environ), listdir))
    except SubmissionError as exc:
        raise SubmissionRefusedError(str(exc)) from None
    refs = [ref for job in parsed.jobs for ref in (job.executable, *job.inputs)] + list(parsed.read_files)
    files: dict[str, Path] = {}
    for ref in refs:
        path = folder / os.path.expanduser(ref.source)
        key = remote.upload_key(ref.source)
        if files.get(key, path) != path:
            raise SubmissionRefusedError(
                f"{source_name}:{ref.line}: two different files are sent as '{key}'; through a server files "
                "outside the submission's folder are matched by name, so give them different names"
            )
        if path.is_dir():
            raise SubmissionRefusedError(
                f"{source_name}:{ref.line}: '{ref.source.rstrip('/')}' is a folder; through a server only files "
                "are sent, matched by name: name the files it holds, or pack it (tar) and unpack it in the job"
            )
        if not path.is_file():
            raise SubmissionRefusedError(
                f"{source_name}:{ref.line}: file '{path}' not found; check the name and that it exists"
            )
        files[key] = path
    empty = {f for job in parsed.jobs for f in job.input_folders} - {ref.within for ref in refs}
    return files, remote.upload_folders(empty)


class RemoteBackend:
    """The HTTP API, through dctoolkit.client.remote."""

    def __init__(self, server: str, token: str) -> None:
        try:
            self.http = remote.Client(server, token)
        except remote.RemoteError as exc:
            raise ClientError(str(exc)) from None

    def submit(self, text: str, source_name: str, folder: Path, files: dict[str, Path] | None) -> list[dict]:
        folders: list[str] = []
        if files is None:
            files, folders = named_uploads(text, source_name, folder)
        body, length, content_type = remote.multipart(remote.submission_parts(text, source_name, files, folders))
        reply = self._call("POST", "/api/jobs/", body=body, content_type=content_type, length=length)
        if reply.status == 400:
            raise SubmissionRefusedError(reply.message())
        if reply.status != 201:
            raise ClientError(reply.message())
        return reply.json()["jobs"]

    def job(self, job_id: int) -> dict:
        reply = self._call("GET", f"/api/jobs/{int(job_id)}/")
        if reply.status == 404:
            raise ClientError(f"no job {job_id} of yours; './dct jobs --all' lists your jobs")
        if reply.status != 200:
            raise ClientError(reply.message())
        return reply.json()

    def jobs(self, ids: list[int]) -> list[dict]:
        found: list[dict] = []
        for start in range(0, len(ids), MAX_IDS_PER_REQUEST):
            chunk = ids[start : start + MAX_IDS_PER_REQUEST]
            reply = self._call("GET", "/api/jobs/", query={"id": ",".join(map(str, chunk))})
            if reply.status != 200:
                raise ClientError(reply.message())
            found += reply.json()["jobs"]
        return found

    def cancel(self, job_id: int) -> dict:
        reply = self._call("POST", f"/api/jobs/{int(job_id)}/cancel/")
        if reply.status == 404:
            raise ClientError(f"no job {job_id} of yours; './dct jobs --all' lists your jobs")
        if reply.status != 200:
            raise ClientError(reply.message())
        return reply.json()

    def results(self, job_id: int, dest: Path) -> Path:
        job = self.job(job_id)
        if not job.get("started_at") and job["state"] not in FINAL_STATES:
            raise ClientError(f"job {job_id} has no results yet (it is {job['state']})")
        dest.mkdir(parents=True, exist_ok=True)
        try:
            for stream in ("stdout", "stderr"):
                (dest / stream).write_bytes(self.http.output(job["id"], stream)[0])
            for f in self.http.output_files(job["id"]):
                target = dest / f["path"]
                if not target.resolve().is_relative_to(dest.resolve()):
                    raise ClientError(f"the server sent a file path outside {dest}: {f['path']}")
                target.parent.mkdir(parents=True, exist_ok=True)
                self.http.download(job["id"], f["path"], target)
        except remote.RemoteError as exc:
            raise ClientError(str(exc)) from None
        return dest

    def _call(self, method: str, path: str, **kwargs: Any) -> remote.Reply:
        try:
            return self.http.call(method, path, **kwargs)
        except remote.RemoteError as exc:
            raise ClientError(str(exc)) from None


class Client:
    """One user's jobs on one dctoolkit: remote when `server` (or DCT_SERVER) is set, else local.

    Remote needs a token (`token`, or DCT_TOKEN: from the profile page or `./dct token`).  Local acts for
    the user running Python, on the database this checkout's settings name (as `./dct` does).
    """

    def __init__(self, server: str | None = None, token: str | None = None) -> None:
        server = server or os.environ.get("DCT_SERVER") or None
        token = token or os.environ.get("DCT_TOKEN") or None
        if token and not server:
            raise ClientError("a token was given (or DCT_TOKEN is set) but no server; give server= or set DCT_SERVER")
        self.server = server
        self.backend: Backend
        if server:
            self.backend = RemoteBackend(server, token or "")
        else:
            # The one way into the ORM from here, taken only without a server (see pyproject's contract).
            from dctoolkit.jobs.localclient import LocalBackend

            self.backend = LocalBackend()

    @property
    def remote(self) -> bool:
        return self.server is not None

    def submit(
        self, path_or_text: str | os.PathLike[str], files: dict[str, str | os.PathLike[str]] | None = None
    ) -> list[dict]:
        """Queue a submission (a file, or its text); the new job objects, as `submit --json`'s `jobs`.

        `files` ({name: path}) gives the files the submission names, matched by name as the API matches
        uploads; without it they are found beside the submission file (or in the current folder).
        """
        text, source_name, folder = read_submission(path_or_text)
        given = None if files is None else {name: Path(path).expanduser() for name, path in files.items()}
        for name, path in (given or {}).items():
            if not path.is_file():
                raise ClientError(f"files['{name}']: no such file {path}")
        return self.backend.submit(text, source_name, folder, given)

    def job(self, job_id: int) -> dict:
        """The job object (as `job --json`)."""
        return self.backend.job(int(job_id))

    def jobs(self, ids: Iterable[int]) -> dict[int, dict]:
        """The job objects of those of `ids` that are yours, by id: one request (`GET /api/jobs/?id=...`)
        for up to 1000 jobs, or one query locally.  An unknown id, or another user's, is left out."""
        wanted = list(dict.fromkeys(int(i) for i in ids))
        if not wanted:
            return {}
        return {job["id"]: job for job in self.backend.jobs(wanted)}

    def wait(self, job_id: int, timeout: float | None = None) -> dict:
        """The job object once the job has ended (succeeded, failed or cancelled).

        Raises TimeoutError naming the job and its state when `timeout` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for delay in poll_delays():
            job = self.job(job_id)
            if job["state"] in FINAL_STATES:
                return job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout:g} s")
                time.sleep(min(delay, left))
                continue
            time.sleep(delay)
        raise AssertionError("unreachable: poll_delays() never ends")

    def cancel(self, job_id: int) -> dict:
        """Cancel the job; the job object after it.  A job already ended is a ClientError saying so."""
        return self.backend.cancel(int(job_id))

    def results(self, job_id: int, dest: str | os.PathLike[str]) -> Path:
        """Copy the job's stdout, stderr and output files into `dest` (created); returns it."""
        return self.backend.results(int(job_id), Path(dest).expanduser().resolve())

    def result_file(self, job_id: int, name: str) -> bytes | None:
        """One output file of the job (its contents), or None when it has none by that name."""
        with tempfile.TemporaryDirectory(prefix="dct-result-") as tmp:
            path = self.results(job_id, tmp) / name
            return path.read_bytes() if path.is_file() else None
