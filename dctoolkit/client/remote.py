"""The remote command line: the HTTP API client the commands use when DCT_SERVER and DCT_TOKEN are set.

Standard library only (urllib), so a laptop needs nothing beyond Django to
drive a cluster; it never touches a database.  Every answer is the API's JSON,
which is the shape `--json` prints, so the commands render it as they render
local data.  Trouble a person can fix (server unreachable, token refused, no
such job) raises RemoteError with a message that says what to do.
"""

from __future__ import annotations

import json
import mimetypes
import secrets
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for types only: intake.queue imports the job models and the broker; parse costs
    # `dct status` through the API a third of its start-up
    from dctoolkit.jobs.intake.parse import InputFile
    from dctoolkit.jobs.intake.queue import FolderFiles

# Seconds to wait for the server to answer one request (uploads and downloads stream within it).
TIMEOUT_SECONDS = 60
# Copy size for downloads.
CHUNK_BYTES = 1024 * 1024


class RemoteError(Exception):
    """The server could not be used, or refused; the message is for a person."""


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def message(self) -> str:
        """The `error` (or DRF's `detail`) the API sent, or the status."""
        try:
            data = self.json()
        except ValueError:
            data = None
        if isinstance(data, dict) and (data.get("error") or data.get("detail")):
            return str(data.get("error") or data.get("detail"))
        return f"the server answered {self.status}"


class Client:
    """One server, one token.  Paths are the API's, such as `/api/jobs/`."""

    def __init__(self, server: str, token: str) -> None:
        if not token:
            raise RemoteError(
                f"DCT_SERVER is set ({server}) but DCT_TOKEN is not; get your token from your profile page "
                "(/accounts/profile/) or with './dct token' on the server, and set DCT_TOKEN"
            )
        self.server = server.rstrip("/")
        self.token = token

    # --- transport ---------------------------------------------------------------
    def call(self, method: str, path: str, query: dict | None = None, body: Iterable[bytes] | None = None,
             content_type: str | None = None, length: int | None = None,
             stream_to: Path | None = None) -> Reply:  # fmt: skip
        """One request; any HTTP status comes back as a Reply, except 401 (a bad token) which raises."""
        url = self.server + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json, text/plain, */*"}
        if content_type:
            headers["Content-Type"] = content_type
        if length is not None:
            headers["Content-Length"] = str(length)
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 (http(s) only)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                if stream_to is not None:
                    with open(stream_to, "wb") as out:
                        shutil.copyfileobj(response, out, CHUNK_BYTES)
                    return Reply(response.status, b"", dict(response.headers))
                return Reply(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as exc:
            reply = Reply(exc.code, exc.read(), dict(exc.headers))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(
                f"cannot reach DCT_SERVER={self.server} ({reason}); check the address and that the portal runs"
            ) from None
        if reply.status == 401:
            raise RemoteError(
                f"{self.server} refused the token ({reply.message()}); get a fresh one from your profile page "
                "(/accounts/profile/) or with './dct token' on the server, and set DCT_TOKEN"
            )
        return reply

    def get_json(self, path: str, query: dict | None = None) -> Any:
        reply = self.call("GET", path, query)
        if reply.status != 200:
            raise RemoteError(reply.message())
        return reply.json()

    # --- jobs --------------------------------------------------------------------
    def job(self, job_id: int) -> dict:
        row = self.find_job(job_id)
        if row is None:
            raise RemoteError(f"no job {job_id} of yours; './dct jobs --all' lists your jobs")
        return row

    def find_job(self, job_id: int) -> dict | None:
        """The job object, or None when the server has no job of this user by that id (404)."""
        reply = self.call("GET", f"/api/jobs/{job_id}/")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise RemoteError(reply.message())
        return reply.json()

    def dag(self, dag_id: int, rerun: bool = False) -> dict:
        """The DAG object (after running again what did not succeed, with `rerun`)."""
        reply = self.call("POST", f"/api/dags/{dag_id}/rerun/") if rerun else self.call("GET", f"/api/dags/{dag_id}/")
        if reply.status == 404:
            raise RemoteError(f"no DAG {dag_id} of yours")
        if reply.status != 200:
            raise RemoteError(reply.message())
        return reply.json()

    def jobs(self, query: dict, limit: int) -> list[dict]:
        """Up to `limit` jobs matching `query` (the list endpoint's parameters), newest first."""
        rows: list[dict] = []
        page = 1
        while len(rows) < limit:
            data = self.get_json("/api/jobs/", {**query, "page": page})
            rows += data["jobs"]
            if not data["next"]:
                break
            page += 1
        return rows[:limit]

    def submit(self, text: str, source_name: str, files: dict[str, Path], folders: Sequence[str] = ()) -> list[dict]:
        """Upload a submission file and the files it names (by name), and the folders it names that hold none
        (`upload_folders`); the queued jobs."""
        return self.submit_answer(text, source_name, files, folders)["jobs"]

    def submit_answer(self, text: str, source_name: str, files: dict[str, Path], folders: Sequence[str] = ()) -> dict:
        """Upload a submission (or DAG) file and its files; the server's whole answer (a DAG's has `dag`)."""
        body, length, content_type = multipart(submission_parts(text, source_name, files, folders))
        reply = self.call("POST", "/api/jobs/", body=body, content_type=content_type, length=length)
        if reply.status != 201:
            raise RemoteError(reply.message())
        return reply.json()

    def control(self, verb: str, ids: list[int]) -> tuple[list[dict], dict[int, str]]:
        """cancel / hold / release each job; the jobs after it, and why it failed for some."""
        for job_id in ids:
            self.job(job_id)  # every id must be the user's before any is touched, as locally
        rows, failures = [], {}
        for job_id in ids:
            reply = self.call("POST", f"/api/jobs/{job_id}/{verb}/")
            if reply.status == 200:
                rows.append(reply.json())
            elif reply.status == 409:
                failures[job_id] = reply.message()
                rows.append(self.job(job_id))
            else:
                raise RemoteError(reply.message())
        return sorted(rows, key=lambda r: r["id"]), failures

    def control_many(self, verb: str, selectors: dict) -> list[dict]:
        """cancel / hold / release the jobs `selectors` names (as POST /api/jobs/VERB/ takes them): those changed."""
        body = json.dumps(selectors).encode()
        reply = self.call("POST", f"/api/jobs/{verb}/", body=[body], content_type="application/json", length=len(body))
        if reply.status != 200:
            raise RemoteError(reply.message())
        return reply.json()["jobs"]

    def post_json(self, method: str, path: str, document: dict) -> Reply:
        body = json.dumps(document).encode()
        return self.call(method, path, body=[body], content_type="application/json", length=len(body))

    def resubmit(self, path: str, failed: bool) -> list[dict]:
        """POST /api/jobs/{id}/resubmit/ or /api/submissions/{id}/resubmit/: the new jobs."""
        reply = self.post_json("POST", path, {"failed": failed})
        if reply.status != 201:
            raise RemoteError(reply.message())
        return reply.json()["jobs"]

    def edit(self, ids: list[int], changes: dict[str, str]) -> tuple[list[dict], dict[int, str]]:
        """PATCH each job with `changes`; the jobs after it, and why not for those in another state (409)."""
        for job_id in ids:
            self.job(job_id)  # every id must be the user's before any is changed, as locally
        rows, failures = [], {}
        for job_id in ids:
            reply = self.post_json("PATCH", f"/api/jobs/{job_id}/", changes)
            if reply.status == 200:
                rows.append(reply.json())
            elif reply.status == 409:
                failures[job_id] = reply.message()
            else:
                raise RemoteError(reply.message())
        return rows, failures

    def output(self, job_id: int, stream: str, offset: int = 0) -> tuple[bytes, str]:
        """The job's stdout or stderr from byte `offset`, and the job's state before it was read."""
        # The server answers at most a few MB from an offset; X-Output-More says ask again.
        chunks, state = [], None
        while True:
            reply = self.call("GET", f"/api/jobs/{job_id}/{stream}", {"offset": offset} if offset else None)
            if reply.status != 200:
                raise RemoteError(reply.message())
            state = reply.headers.get("X-Job-State", "") if state is None else state
            chunks.append(reply.body)
            offset += len(reply.body)
            if not reply.body or reply.headers.get("X-Output-More") != "true":
                return b"".join(chunks), state

    def output_files(self, job_id: int) -> list[dict]:
        return self.get_json(f"/api/jobs/{job_id}/files/")["files"]

    def download(self, job_id: int, path: str, dest: Path) -> None:
        reply = self.call("GET", f"/api/jobs/{job_id}/files/{urllib.parse.quote(path)}", stream_to=dest)
        if reply.status != 200:
            raise RemoteError(f"{path}: {reply.message()}")


def upload_names(refs: list[InputFile], source: FolderFiles, by_path: bool = True) -> dict[str, Path]:
    """The files to upload, by the key the server matches them with.

    A file named by a plain relative path (`data/a.txt`, as a `dir/` input
    expands) is sent with that path, so the server finds a folder's files as
    `./dct submit` does here; anything else (`../x`, `/abs/x`, a bare name, or
    every file with `by_path=False`) by its file name.
    """
    files: dict[str, Path] = {}
    for ref in refs:
        path = source.path(ref)
        key = upload_key(ref.source) if by_path else ref.name
        if files.get(key, path) != path:
            raise RemoteError(
                f"two different files are sent as '{key}'; through DCT_SERVER files outside the submission's "
                "folder are matched by name, so give them different names"
            )
        files[key] = path
    return files


def upload_key(source: str) -> str:
    """`source` as the server will look it up: a plain relative path as it is, anything else by its name."""
    relative = source.removeprefix("./")
    parts = relative.split("/")
    plain = not relative.startswith("/") and "\\" not in relative and all(p not in ("", ".", "..", "~") for p in parts)
    return relative if plain and len(parts) > 1 and not relative.startswith("~") else Path(source).name


def upload_folders(folders: Iterable[str]) -> list[str]:
    """The `dir/` inputs that hold no file (`folders`, as written, without the slash), as the server is told of
    them (the API's `dirs`): each plain relative one by its path; another (`../x`, `/abs/x`) is not sent, as
    its files would not be sent by path, and the server refuses it as not found."""
    sent = []
    for folder in folders:
        relative = folder.removeprefix("./")
        parts = relative.split("/")
        if relative.startswith(("/", "~")) or "\\" in relative or any(p in ("", ".", "..") for p in parts):
            continue
        sent.append(relative)
    return sorted(set(sent))


# (field, file name or None for a plain text field, content or a file to stream)
Part = tuple[str, str | None, bytes | Path]


def submission_parts(
    text: str, source_name: str, files: Mapping[str, Path | str], folders: Sequence[str] = ()
) -> list[Part]:
    """The parts of POST /api/jobs/: the submission, each file, and, when a key is a path (a folder's
    files), one `paths` field per file in the same order, so that the server finds `dir/` inputs; and one
    `dirs` field per folder that holds no file (`upload_folders`), which no file can bring."""
    parts: list[Part] = [("submission", Path(source_name).name, text.encode())]
    parts += [("files", Path(key).name, Path(path)) for key, path in files.items()]
    if any("/" in key for key in files):
        parts += [("paths", None, key.encode()) for key in files]
    parts += [("dirs", None, folder.encode()) for folder in folders]
    return parts


def multipart(parts: list[Part]) -> tuple[Iterator[bytes], int, str]:
    """multipart/form-data of (field, file name, content or file) parts (a file name of None: a plain text
    field): the body as chunks (files are streamed from disk, not read whole), its length, and its Content-Type."""
    boundary = "dct-" + secrets.token_hex(16)
    pieces: list[bytes | Path] = []
    for name, filename, content in parts:
        if filename is None:
            head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            pieces += [head.encode(), content, b"\r\n"]
            continue
        kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        quoted = filename.replace('"', "%22")
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{quoted}"\r\n'
        pieces += [f"{head}Content-Type: {kind}\r\n\r\n".encode(), content, b"\r\n"]
    pieces.append(f"--{boundary}--\r\n".encode())
    length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in pieces)
    return _chunks(pieces), length, f"multipart/form-data; boundary={boundary}"


def _chunks(pieces: list[bytes | Path]) -> Iterator[bytes]:
    for piece in pieces:
        if isinstance(piece, bytes):
            yield piece
            continue
        with open(piece, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
