"""The submit form: builds a submission file from its fields, so that the portal's jobs go
through exactly the checks the command line's do, and puts each error beside its field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms
from django.core.files.uploadedfile import UploadedFile

from dctoolkit.jobs.intake.condor import join_arguments
from dctoolkit.jobs.intake.parse import (
    MAX_NAME_BYTES,
    MAX_SUBMISSION_BYTES,
    SubmissionError,
    submission_too_big_message,
)
from dctoolkit.jobs.intake.queue import MAX_FILE_BYTES
from dctoolkit.jobs.jobpolicy import POLICY_KEYS
from dctoolkit.jobs.models import WAITING_STATES, Job
from dctoolkit.jobs.web.uploads import UploadError, keyed_uploads
from dctoolkit.lib.words import QuotingError, split_words

# Characters a file name may not carry into a generated submission file: ','
# separates data files, '#' starts a comment, quotes and newlines end values.
UNSAFE_NAME_CHARS = set(",#\"'\n\r")

# Which form field each submission key came from (for errors located by line).
KEY_FIELDS = {
    "executable": "executable",
    "data": "data",
    "email": "email",
    "node": "node",
    "arguments": "arguments",
    "request_cpus": "request_cpus",
    "request_memory": "request_memory",
    "request_gpus": "request_gpus",
    "max_runtime": "max_runtime",
    "queue": "copies",
    "name": "name",
    "labels": "labels",
    "gpu_type": "gpu_type",
}


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Any number of files in one field (an empty list when none)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        kwargs.setdefault("required", False)
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None) -> list[UploadedFile]:
        if not data:
            return []
        items = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(item, initial) for item in items]


def style_fields(form: forms.BaseForm) -> None:
    """Bootstrap classes on every widget.  (A field with errors is marked at render time:
    its container gets the form's error_css_class, which dct.css colours.)"""
    # mypy: error_css_class is a Form class attribute Django reads; the stubs leave it out of BaseForm.
    form.error_css_class = "has-error"  # type: ignore[attr-defined]
    for field in form.fields.values():
        widget = field.widget
        if not isinstance(widget, forms.RadioSelect):
            widget.attrs["class"] = "form-select" if isinstance(widget, forms.Select) else "form-control"


def _as_list(value) -> list:
    if not value:
        return []
    return value if isinstance(value, list) else [value]


def _within_size(uploads: list[UploadedFile]) -> list[UploadedFile]:
    for upload in uploads:
        _name_fits(upload)
        # mypy: an uploaded file always has a size.
        if upload.size > MAX_FILE_BYTES:  # type: ignore[operator]
            limit = MAX_FILE_BYTES // 1024**3
            raise forms.ValidationError(
                f"'{upload.name}' is larger than {limit} GB, the most one uploaded file may be."
            )
    return uploads


def _name_fits(upload: UploadedFile) -> None:
    # mypy: an uploaded file always has a name.
    size = len(upload.name.encode(errors="replace"))  # type: ignore[union-attr]
    if size > MAX_NAME_BYTES:
        raise forms.ValidationError(
            # mypy: an uploaded file always has a name.
            f"'{upload.name[:40]}…': the file name is {size:,} bytes; the limit is {MAX_NAME_BYTES} bytes; "  # type: ignore[index]
            "rename the file."
        )


def _one_line(value: str, label: str) -> str:
    if "\n" in value or "\r" in value:
        raise forms.ValidationError(f"{label} must fit on one line.")
    return value


class SubmitForm(forms.Form):
    """Either program + data files + resources ("program"), or a submission file with its files ("file")."""

    MODES = (("program", "Program and data files"), ("file", "A submission file"))

    mode = forms.ChoiceField(choices=MODES, initial="program", widget=forms.RadioSelect)
    executable = forms.FileField(required=False, help_text="A .py file, or a script with a #! line.")
    # mypy: a field named like a BaseForm attribute: the form metaclass moves fields off the class.
    data = MultipleFileField(label="Data files", help_text="Copied into the job's folder beside the program.")  # type: ignore[assignment]
    submission = forms.FileField(
        required=False,
        label="Submission file",
        help_text="key = value lines with queue statements, as an HTCondor submit file or job.txt.",
    )
    # mypy: a field named like a BaseForm attribute: the form metaclass moves fields off the class.
    files = MultipleFileField(label="Files it names", help_text="Every executable and data file the file names.")  # type: ignore[assignment]
    folder = MultipleFileField(
        label="Or its whole folder",
        widget=MultipleFileInput(attrs={"webkitdirectory": "", "data-paths": "folder_paths"}),
        help_text="The folder the submission file lies in: each file goes with its path in that folder, so "
        "dir/ inputs and sub/file.txt are found as ./dct submit finds them.",
    )
    name = forms.CharField(required=False, max_length=200, help_text="Default: the program's name.")
    email = forms.EmailField(required=False, help_text="Mailed when the job ends.")
    node = forms.ChoiceField(required=False, choices=[("", "Any node that fits")])
    request_cpus = forms.IntegerField(label="CPU cores", required=False, min_value=1, max_value=1024, initial=1)
    request_memory = forms.CharField(
        label="Memory", required=False, initial="256MB", max_length=20, help_text="e.g. 512MB, 4GB"
    )
    request_gpus = forms.IntegerField(label="GPUs", required=False, min_value=0, max_value=64, initial=0)
    gpu_type = forms.CharField(label="GPU kind", required=False, max_length=100, help_text="e.g. A100; empty: any")
    labels = forms.CharField(
        label="Node labels", required=False, max_length=500, help_text="e.g. ib, avx512: every one must hold"
    )
    max_runtime = forms.CharField(
        label="Time limit", required=False, max_length=20, help_text="e.g. 90s, 10m, 2h; empty: none"
    )
    arguments = forms.CharField(required=False, max_length=8000, help_text="Quoted as on a shell's command line.")
    copies = forms.IntegerField(
        label="Number of copies",
        required=False,
        min_value=1,
        max_value=10_000,
        initial=1,
        help_text="$(Process) is 0..N-1.",
    )

    def __init__(self, *args, nodes: list[dict] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # mypy: the node field is a ChoiceField, which has choices.
        self.fields["node"].choices = [("", "Any node that fits"), *((n["name"], node_label(n)) for n in nodes or [])]  # type: ignore[attr-defined]
        style_fields(self)

    def clean_name(self) -> str:
        return _one_line(self.cleaned_data["name"], "The name")

    def clean_labels(self) -> str:
        # One line: the value becomes a line of the submission text, which must not gain keys from it.
        return _one_line(self.cleaned_data["labels"], "The labels")

    def clean_gpu_type(self) -> str:
        return _one_line(self.cleaned_data["gpu_type"], "The GPU kind")

    def clean_arguments(self) -> str:
        text = _one_line(self.cleaned_data["arguments"], "The arguments")
        if not text.strip():
            return ""
        try:
            # Typed as on a command line; written into the submission in HTCondor's new syntax.
            return join_arguments(split_words(text))
        except QuotingError as exc:
            raise forms.ValidationError(f"Cannot read the arguments ({exc}); close every quote.") from None

    def clean(self) -> dict[str, Any]:
        # Form.clean() returns cleaned_data, never None (the stubs allow None for overrides).
        data: dict[str, Any] = super().clean()  # type: ignore[assignment]
        if data.get("mode") == "file":
            if not data.get("submission") and "submission" not in self.errors:
                self.add_error("submission", "Choose a submission file to upload.")
            if "files" not in self.errors and "folder" not in self.errors:
                try:
                    data["uploads"] = self.file_mode_uploads(data.get("files") or [], data.get("folder") or [])
                except UploadError as exc:
                    self.add_error("folder" if data.get("folder") else "files", f"{exc}.")
            return data
        if not data.get("executable") and "executable" not in self.errors:
            self.add_error("executable", "Choose the program to run (a .py file or a script).")
        seen: set[str] = set()
        for field in ("executable", "data"):
            for upload in _as_list(data.get(field)):
                if UNSAFE_NAME_CHARS & set(upload.name):
                    self.add_error(field, f"'{upload.name}': rename the file without , # or quotes in its name.")
                elif upload.name in seen:
                    # Two uploads are two files, whatever their names: one would overwrite the other.
                    self.add_error(
                        field,
                        f"two files would be staged as '{upload.name}'; rename one of them, every input lands "
                        "in the job's folder by its file name.",
                    )
                seen.add(upload.name)
        return data

    def clean_submission(self) -> UploadedFile | None:
        upload = self.cleaned_data["submission"]
        if upload is not None:
            _name_fits(upload)
            if upload.size > MAX_SUBMISSION_BYTES:  # before a byte of it is read
                raise forms.ValidationError(f"{upload.name[:100]}: {submission_too_big_message(upload.size)}.")
        return upload

    def clean_files(self) -> list[UploadedFile]:
        return _within_size(self.cleaned_data["files"])

    def clean_data(self) -> list[UploadedFile]:
        return _within_size(self.cleaned_data["data"])

    def clean_folder(self) -> list[UploadedFile]:
        return _within_size(self.cleaned_data["folder"])

    def file_mode_uploads(self, files: list[UploadedFile], folder: list[UploadedFile]) -> dict[str, UploadedFile]:
        """The files and the folder's files by the key UploadedFiles matches them with: a folder's by their
        path inside the chosen folder (sent beside them by portal.js, in the same order), the others by name."""
        sent = self.data.getlist("folder_paths") if hasattr(self.data, "getlist") else []
        if len(sent) != len(folder):
            raise UploadError(
                "the folder's files came without their paths (the page's script sends them): allow this page's "
                "JavaScript, or choose the files one by one above"
            )
        # A browser sends each path with the chosen folder's own name first: inside it is what the file names.
        inside = [path.partition("/")[2] or path for path in sent]
        names = [upload.name or "" for upload in [*folder, *files]]
        return keyed_uploads([*folder, *files], names, [*inside, *(Path(name).name for name in names[len(folder) :])])

    def clean_executable(self) -> UploadedFile | None:
        upload = self.cleaned_data["executable"]
        _within_size(_as_list(upload))
        return upload

    # --- the submission file this form stands for --------------------------------

    def submission_text(self) -> tuple[str, str, dict[int, str]]:
        """(text, source name, field of each line) for the program mode."""
        data = self.cleaned_data
        lines: list[tuple[str, str]] = [("executable", data["executable"].name)]
        if data["data"]:
            lines.append(("data", ", ".join(f.name for f in data["data"])))
        for key in ("name", "email", "node", "arguments", "max_runtime", "labels", "gpu_type"):
            if data.get(key):
                lines.append((key, data[key].strip()))
        if data.get("name") and "#" in data["name"] and '"' not in data["name"]:
            # Quoted, so that a '#' in the name does not start a comment.
            lines = [(k, f'"{v}"' if k == "name" else v) for k, v in lines]
        # An empty resource field means the submission file's default.
        if data["request_cpus"] is not None:
            lines.append(("request_cpus", str(data["request_cpus"])))
        if data["request_memory"].strip():
            lines.append(("request_memory", data["request_memory"].strip()))
        # A GPU kind with the GPU count left at its initial 0 asks for one GPU of that kind (the parser's rule).
        if data["request_gpus"] is not None and not (data["request_gpus"] == 0 and data.get("gpu_type")):
            lines.append(("request_gpus", str(data["request_gpus"])))
        if data["copies"] not in (None, 1):
            lines.append(("queue", str(data["copies"])))
        text = "".join(f"{key} = {value}\n" for key, value in lines)
        fields = {number: KEY_FIELDS[key] for number, (key, _) in enumerate(lines, start=1)}
        return text, "portal form", fields

    def uploads(self) -> dict[str, UploadedFile]:
        """The uploaded files by name, as UploadedFiles matches them."""
        data = self.cleaned_data
        if data["mode"] == "file":
            return data["uploads"]
        return {f.name: f for f in [data["executable"], *data["data"]]}

    def add_submission_error(self, error: SubmissionError, fields: dict[int, str]) -> None:
        """Put each problem of a SubmissionError beside the field it concerns (all of them, as the CLI says them)."""
        # A DAG's error holds one error per file it found problems in (the DAG file, its nodes' submit files).
        for part in getattr(error, "parts", [error]):
            for line, message in part.problems:
                if self.cleaned_data["mode"] == "file":
                    field = "files" if "not found" in message else "submission"
                    self.add_error(field, f"{part.source}:{line}: {message}")
                else:
                    self.add_error(fields.get(line), message)


def node_label(node: dict) -> str:
    """'node-1 — 4 cores, 7.6 GB, 1 GPU (available)': a node and what it offers."""
    gpus = len(node["gpus"])
    memory = node["memory_total_mb"] / 1024
    gpu_text = f", {gpus} GPU{'s' if gpus != 1 else ''}" if gpus else ""
    return f"{node['name']} — {node['slots']} slots, {memory:.1f} GB{gpu_text} ({node['state']})"


# --- a waiting, queued or held job's Edit form (rerun.job_edit takes it) ---

# The Edit form's fields: (key, label), in the order shown.
EDIT_FIELDS = (
    ("name", "Name"),
    ("request_cpus", "CPUs"),
    ("request_memory", "Memory"),
    ("request_gpus", "GPUs"),
    ("max_runtime", "Max run time"),
    ("node", "Node"),
    ("labels", "Labels"),
    ("max_retries", "Max retries"),
    # HTCondor's job policy expressions, read by classad2 as `./dct edit` and PATCH /api/jobs/ID/ read them.
    ("on_exit_hold", "On exit hold"),
    ("on_exit_remove", "On exit remove"),
    ("periodic_hold", "Periodic hold"),
    ("periodic_release", "Periodic release"),
    ("periodic_remove", "Periodic remove"),
)
# The fields that hold an expression: shown wider.
_EXPRESSION_FIELDS = frozenset(key for key, _ in EDIT_FIELDS if key in POLICY_KEYS)


def current_values(job: Job) -> dict[str, str]:
    """The job's editable values as the form shows them (and as a submission file writes them)."""
    runtime = job.max_runtime_seconds
    return {
        "name": job.name,
        "request_cpus": str(job.request_cpus),
        "request_memory": f"{job.request_memory_mb}M",
        "request_gpus": str(job.request_gpus),
        "max_runtime": f"{runtime:g}s" if runtime else "",
        "node": job.pinned_node or ", ".join(job.placement.get("nodes", [])),
        "labels": ", ".join(job.placement.get("labels", [])),
        "max_retries": str(job.max_retries),
        **{key: job.policy.get(key, "") for key in _EXPRESSION_FIELDS},
    }


def edit_form(
    job: Job, posted: dict[str, str] | None = None, errors: dict[str, str] | None = None
) -> list[dict] | None:
    """The Edit form's fields with the job's values (or, after a refused edit, the `posted` ones and the
    `errors` by key), or None when its state allows no edit."""
    if job.state not in WAITING_STATES:
        return None
    values = {**current_values(job), **(posted or {})}
    errors = errors or {}
    return [
        {
            "key": key,
            "label": label,
            "value": values[key],
            "error": errors.get(key, ""),
            "wide": key in _EXPRESSION_FIELDS,
        }
        for key, label in EDIT_FIELDS
    ]
