"""./dct submit FILE... [--wait] [--json] [--parsable] [-a KEY=VALUE]...

./dct submit --script PROGRAM [--cpus N] [--memory M] ... runs a program with no submission file.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.utils import timezone

from dctoolkit.checks import TAG as CHECK_TAG
from dctoolkit.cli import DctCommand, caller_path
from dctoolkit.client.remote import upload_folders, upload_names
from dctoolkit.jobs.intake import depends
from dctoolkit.jobs.intake.batch import SRUN_HELPER, dialect_of
from dctoolkit.jobs.intake.dag import is_dag, parse_dag
from dctoolkit.jobs.intake.dagqueue import node_text, prepare_dag, within
from dctoolkit.jobs.intake.flags import (
    Built,
    append_pairs,
    append_to,
    flag_pairs,
    script_options,
    script_submission,
)
from dctoolkit.jobs.intake.keys import InputFile
from dctoolkit.jobs.intake.parse import (
    MAX_SUBMISSION_BYTES,
    SubmissionError,
    parse_submission,
    submission_too_big_message,
)
from dctoolkit.jobs.intake.queue import (
    FolderFiles,
    check_files,
    check_grants,
    prepare,
    queue,
    submit_facts,
    with_script,
)
from dctoolkit.jobs.models import FINAL_STATES, Job, JobState
from dctoolkit.jobs.scheduling.dagman import submit_dag
from dctoolkit.jobs.web.serializers import job_dict, jobs_payload

# How often --wait looks at the jobs again (through the API: less often).
WAIT_POLL_SECONDS = 0.2
REMOTE_WAIT_POLL_SECONDS = 1.0


class Command(DctCommand):
    help = "Queue the jobs of one or more submission files (nothing is queued if any file is bad)."
    # Only dctoolkit's own system checks (dctoolkit/checks.py): Django's URL checks import every view and
    # the API schema, half of this command's start-up, and scripts call it often (`./dct check` runs all).
    requires_system_checks = [CHECK_TAG]
    remote_capable = True

    def add_arguments(self, parser):
        parser.add_argument(
            "files", nargs="+", metavar="FILE", help="submission file(s); with --script, the program to run"
        )
        parser.add_argument("--wait", action="store_true", help="show progress; exit with the job's exit status")
        parser.add_argument("--parsable", action="store_true", help="print only the new job ids, one per line")
        parser.add_argument(
            "--script", action="store_true", help="FILE is a program to run as it is, with no submission file"
        )
        parser.add_argument(
            "-a",
            "--append",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="set a submission key, replacing the file's (as condor_submit -append); may repeat",
        )
        parser.add_argument(
            "--sbatch",
            metavar="OPTIONS",
            help='sbatch options overriding a Slurm script\'s #SBATCH lines, such as --sbatch "--array=0-9 --mem=2G"',
        )
        parser.add_argument(
            "--qsub",
            metavar="OPTIONS",
            help='qsub options overriding a PBS script\'s #PBS lines, such as --qsub "-J 1-4"',
        )
        for flag, meta, text in SCRIPT_OPTIONS:
            parser.add_argument(f"--{flag}", metavar=meta, help=text)

    def handle(self, *args, **options):
        if options["parsable"] and options["json"]:
            raise CommandError("--parsable and --json each choose the whole output; give one of them")
        sources = self.sources(options)
        if any(is_dag(source.built.text) for source in sources):
            self.submit_dag(sources, options)
            return
        rows = self.submit_remotely(sources) if self.remote else self.submit_locally(sources)
        ids = [r["id"] for r in rows]
        if options["parsable"]:
            self.stdout.write("\n".join(map(str, ids)))
        elif not options["json"]:
            self.stdout.write(f"{len(ids)} job{'s' if len(ids) != 1 else ''} submitted: {span(ids)}")
        if options["wait"]:
            try:
                rows = self.wait(rows, quiet=options["json"] or options["parsable"])
            except KeyboardInterrupt:
                raise CommandError("stopped waiting; the jobs go on ('./dct jobs' shows them)") from None
        if options["json"]:
            if not self.remote:
                rows = jobs_payload(self.load(ids), timezone.now())
            self.emit_json({"jobs": rows})
        if options["wait"]:
            sys.exit(exit_status(rows))

    def sources(self, options: dict) -> list[Source]:
        """Each submission's text (made from the options with --script, changed by -a and the options
        otherwise), the name its errors are told under, and the folder its paths are relative to."""
        if options.get("chdir") and not options["chdir"].startswith("/"):  # from the caller's folder
            options = {**options, "chdir": os.path.normpath(caller_path(options["chdir"]))}
        try:
            pairs = flag_pairs(options) + append_pairs(options["append"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["script"]:
            if len(options["files"]) != 1:
                raise CommandError(
                    f"--script runs one program; {len(options['files'])} were given ({' '.join(options['files'])})"
                )
            return [script_source(options["files"][0], pairs)]
        extra = [(f"--{o}", options[o]) for o in ("sbatch", "qsub") if options.get(o)]
        return [file_source(name, pairs, extra) for name in options["files"]]

    def submit_dag(self, sources: list[Source], options: dict) -> None:
        """A DAG file (DAGMan's language): its nodes run as jobs, parents first; answers the DAG's id and the
        jobs of its first nodes."""
        if len(sources) != 1 or options["wait"] or options["script"] or options["append"]:
            raise CommandError("a DAG file is submitted alone, without --wait, --script or -a")
        source = sources[0]
        if self.remote:
            self.submit_dag_remotely(source, options)
            return
        try:
            prepared = prepare_dag(
                source.built.text, source.name, FolderFiles(source.folder), dict(settings.SUBMITTER_ENV)
            )
        except SubmissionError as exc:
            raise CommandError(str(exc)) from None
        self.tell_notes(source, prepared.dag.notes)
        try:
            dag, jobs = submit_dag(prepared, self.acting_user(), timezone.now())
        except SubmissionError as exc:
            raise CommandError(str(exc)) from None
        self.answer_dag(dag.id, jobs_payload(jobs, timezone.now()), options)

    def answer_dag(self, dag_id: int, rows: list[dict], options: dict) -> None:
        ids = [row["id"] for row in rows]
        if options["parsable"]:
            self.stdout.write("\n".join(map(str, ids)))
        elif options["json"]:
            self.emit_json({"dag": dag_id, "jobs": rows})
        else:
            self.stdout.write(f"dag {dag_id} submitted: first jobs {span(ids)} ('./dct dag {dag_id}' shows its nodes)")

    def submit_dag_remotely(self, source: Source, options: dict) -> None:
        """Check the DAG and its nodes' submit files here (the same messages as locally, less what needs the
        server's nodes), then upload it with every file its nodes name, matched by name on the server."""
        folder = FolderFiles(source.folder)
        try:
            parsed = parse_dag(source.built.text, source.name, exists=lambda p: folder.read_text(p) is not None)
            files: dict[str, Path] = {}
            for node in parsed.nodes:
                node_files = within(folder, node.directory)
                scripts = [s.executable for s in (node.pre, node.post) if s is not None]
                named = [InputFile(path, Path(path).name, node.line) for path in scripts]
                if not node.noop:
                    named.append(InputFile(node.submit_path(), Path(node.submit_path()).name, node.line))
                    text = node_text(node, folder.read_text(node.submit_path()) or "", 0, source.name)
                    facts = submit_facts(node_files, dict(settings.SUBMITTER_ENV))
                    one = parse_submission(text, node.submit_path(), max_queue=settings.DCT_MAX_QUEUE, facts=facts)
                    checked = check_files(one, node.submit_path(), node_files)
                    files |= upload_names(checked, node_files, by_path=False)  # type: ignore[arg-type]
                scripts_sent = upload_names(named[: len(scripts)], node_files, by_path=False)  # type: ignore[arg-type]
                files |= scripts_sent | upload_names(named[len(scripts) :], folder, by_path=False)
        except SubmissionError as exc:
            raise CommandError(str(exc)) from None
        self.tell_notes(source, parsed.notes)
        # mypy: self.remote is set: handle() takes the remote path only then.
        answer = self.remote.submit_answer(source.built.text, source.name, files)  # type: ignore[union-attr]
        self.answer_dag(answer["dag"], answer["jobs"], options)

    def submit_locally(self, sources: list[Source]) -> list[dict]:
        user = self.acting_user()
        prepared = []
        for source in sources:
            try:
                # The submitter's environment, for getenv and $ENV(NAME) (HTCondor reads it at submit time).
                env = dict(settings.SUBMITTER_ENV)
                one = prepare(source.built.text, source.name, FolderFiles(source.folder), env)
                depends.parents_of(one.submission, user)  # every file's dependencies checked before any is queued
                check_grants(one.submission, user)  # and its granted folders
            except SubmissionError as exc:
                raise CommandError(source.built.explain(exc)) from None
            prepared.append(one)
            self.tell_notes(source, one.submission.notes)
        try:
            jobs = [job for p in prepared for job in queue(p, user)]
        except SubmissionError as exc:
            raise CommandError(str(exc)) from None
        return [job_dict(j, timezone.now()) for j in self.load([j.id for j in jobs])]

    def submit_remotely(self, sources: list[Source]) -> list[dict]:
        """Check every file here first (same messages as locally), then upload each submission."""
        uploads = []
        for source in sources:
            folder = FolderFiles(source.folder)
            text, name = source.built.text, source.name
            try:
                facts = submit_facts(folder, dict(settings.SUBMITTER_ENV))
                parsed = parse_submission(text, name, max_queue=settings.DCT_MAX_QUEUE, facts=facts)
                refs = check_files(parsed, name, with_script(parsed, text, folder))
            except SubmissionError as exc:
                raise CommandError(source.built.explain(exc)) from None
            self.tell_notes(source, parsed.notes)
            # A batch script travels as the submission itself, not a second time as a file.
            refs = [ref for ref in refs if not parsed.script or ref.source not in (parsed.script, SRUN_HELPER)]
            # A `dir/` that holds no file: no file brings it, so the server is told of it (`dirs`).
            empty = {f for job in parsed.jobs for f in job.input_folders} - {ref.within for ref in refs}
            uploads.append((text, name, upload_names(refs, folder), upload_folders(empty)))
        # mypy: self.remote is set: handle() takes the remote path only then.
        remote = self.remote
        return [row for text, name, files, empty in uploads for row in remote.submit(text, name, files, empty)]  # type: ignore[union-attr]

    def tell_notes(self, source: Source, notes: tuple[tuple[int, str], ...]) -> None:
        """What a batch script asked that is accepted and not used, on stderr (stdout stays the answer)."""
        for line, note in notes:
            where = source.built.origins.get(line) or f"{source.name}:{line}"
            self.stderr.write(f"{where}: note: {note}")

    def load(self, ids: list[int]) -> list[Job]:
        return list(Job.objects.filter(id__in=ids).select_related("owner", "node").order_by("id"))

    def fetch(self, rows: list[dict]) -> list[dict]:
        """The jobs as they are now."""
        if self.remote:
            wanted = {r["id"] for r in rows}
            found = []
            for sub in sorted({r["submission"] for r in rows}):
                found += self.remote.jobs({"submission": sub}, limit=len(wanted))
            return sorted((r for r in found if r["id"] in wanted), key=lambda r: r["id"])
        now = timezone.now()
        return [job_dict(j, now) for j in self.load([r["id"] for r in rows])]

    def wait(self, rows: list[dict], quiet: bool) -> list[dict]:
        seen: dict[int, tuple] = {}
        pause = REMOTE_WAIT_POLL_SECONDS if self.remote else WAIT_POLL_SECONDS
        while True:
            rows = self.fetch(rows)
            for row in rows:
                key = (row["state"], row["node"])
                if seen.get(row["id"]) != key and not quiet:
                    self.stdout.write(progress_line(row))
                seen[row["id"]] = key
            if all(r["state"] in FINAL_STATES for r in rows):
                return rows
            time.sleep(pause)


# --script's options: (option, metavar, help); each sets the submission key flags.FLAG_KEYS names.
SCRIPT_OPTIONS = (
    ("cpus", "N", "CPU cores (request_cpus)"),
    ("memory", "M", "memory, such as 4GB; a bare number is MB (request_memory)"),
    ("gpus", "G", "GPUs (request_gpus)"),
    ("time", "T", "wall-time limit, such as 90s, 10m, 2h (max_runtime)"),
    ("name", "NAME", "the job's name (name)"),
    ("queue", "N", "submit N jobs; $(Process) is 0..N-1 in --arguments (queue)"),
    ("after-ok", "IDS", "start after these jobs succeed: ids, ranges 12-20, batch:S (after_ok)"),
    ("after-any", "IDS", "start after these jobs end, however they end (after_any)"),
    ("after-fail", "IDS", "start after these jobs fail or are cancelled (after_fail)"),
    ("begin", "TIME", "start no earlier than this: 2026-12-01T22:00 (server's local time) or +30m (start_after)"),
    ("arguments", "ARGS", "the program's arguments, quoted as in a submission file (arguments)"),
    ("email", "E", "mail this address when the job ends (email)"),
    ("chdir", "DIR", "start the job in this folder, which staff granted you (initialdir = DIR)"),
)


@dataclass(frozen=True)
class Source:
    """One submission to queue: its text, the name errors are told under, the folder its paths start from."""

    built: Built
    name: str
    folder: Path


def file_source(name: str, pairs: list[tuple[str, str, str]], extra: Sequence[tuple[str, str]] = ()) -> Source:
    text, _ = read_submission(name)
    try:
        if dialect_of(text):
            if pairs:
                raise ValueError(
                    f"{name} is a batch script: give its options as sbatch or qsub options, such as "
                    f'--sbatch "--cpus-per-task=4" (not {pairs[0][2]})'
                )
            built = Built(text)
            for option, value in extra:
                wants = "slurm" if option == "--sbatch" else "pbs"
                if dialect_of(text) != wants:
                    other = "--qsub" if wants == "slurm" else "--sbatch"
                    raise ValueError(
                        f"{option}: {name} is not a {'Slurm' if wants == 'slurm' else 'PBS'} script; use {other}"
                    )
                built = script_options(text, value, f"{option} {value}")
        elif extra:
            raise ValueError(f"{extra[0][0]}: {name} is not a Slurm or PBS batch script (no #SBATCH or #PBS lines)")
        else:
            built = append_to(text, pairs)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return Source(built, name, caller_path(name).resolve().parent)


def script_source(program: str, pairs: list[tuple[str, str, str]]) -> Source:
    path = caller_path(program)
    if not path.is_file():
        raise CommandError(f"{program}: no such file; give the path of the program to run")
    try:
        built = script_submission(program, pairs)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return Source(built, program, path.resolve().parent)


def read_submission(name: str) -> tuple[str, str]:
    """The submission file's text (a relative name is in the caller's folder) and the name it is reported under."""
    path = caller_path(name)
    try:
        with open(path, "rb") as f:
            # Never the whole of a 200 MB file: one byte past the limit is enough to refuse it.
            data = f.read(MAX_SUBMISSION_BYTES + 1)
        if len(data) > MAX_SUBMISSION_BYTES:
            size = os.stat(path).st_size
            raise CommandError(f"{name}: {submission_too_big_message(size)}")
        return data.decode(), name
    except FileNotFoundError:
        raise CommandError(f"{name}: no such file; give the path of your submission file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{name}: cannot read it as text ({exc})") from None


def span(ids: list[int]) -> str:
    """`7`, `7-9`, `7, 9, 12`, or `none` (HTCondor's `queue 0`)."""
    if not ids:
        return "none"
    if len(ids) == 1:
        return str(ids[0])
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}-{ids[-1]}"
    return ", ".join(map(str, ids))


def progress_line(job: dict) -> str:
    """One line of --wait progress for a job (a job dict, as the API and --json shape it)."""
    where = f" on {job['node']}" if job["node"] and job["state"] in (JobState.DISPATCHED, JobState.RUNNING) else ""
    line = f"job {job['id']}: {job['state']}{where}"
    if job["state"] in FINAL_STATES:
        line += f" (exit status {job['exit_code']})" if job["exit_code"] is not None else ""
        if job["run_seconds"] is not None:
            line += f" after {job['run_seconds']:.1f}s"
        if job["reason"]:
            line += f": {job['reason']}"
    return line


def exit_status(jobs: list[dict]) -> int:
    """The job's own exit status; the first non-zero of several; 1 when one ended without one."""
    for job in jobs:
        if job["state"] != JobState.SUCCEEDED:
            return job["exit_code"] if job["exit_code"] not in (None, 0) else 1
    return 0
