"""Submission keys from the command line: `submit --script PROGRAM --cpus 4 ...` and `submit FILE -a KEY=VALUE`.

Pure: both become submission text that the one parser reads, so every check
of a submission file applies to them, and the text kept with the jobs says
what was asked.  Errors on a line the command line wrote are told back in the
command line's words (`--memory 4XB: ...`, `-a request_cpus=x: ...`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from dctoolkit.jobs.intake import batch
from dctoolkit.jobs.intake.condor import join_arguments
from dctoolkit.jobs.intake.parse import KEYS, SubmissionError
from dctoolkit.lib.words import QuotingError, split_words

# `submit` option -> the submission key it sets (condor_submit's names; sbatch's options).
FLAG_KEYS = {
    "cpus": "request_cpus",
    "memory": "request_memory",
    "gpus": "request_gpus",
    "time": "max_runtime",
    "name": "name",
    "queue": "queue",
    "after_ok": "after_ok",
    "after_any": "after_any",
    "after_fail": "after_fail",
    "begin": "start_after",
    "arguments": "arguments",
    "email": "email",
    "chdir": "initialdir",
}
# Why a flag whose key this version's parser does not know yet is refused (instead of ignored).
NOT_YET: dict[str, str] = {}
# Keys the parser knows whose flag still means something this version cannot do (none now: `--chdir` is
# `initialdir` with an absolute path, a host folder granted to the user, DESIGN.md "Granted folders").
FLAG_NOT_YET: frozenset[str] = frozenset()
_QUEUE_STATEMENT = re.compile(r"^\s*queue(\s|=|$)", re.IGNORECASE)
_KEY_OF_LINE = re.compile(r"^\s*(\+?[A-Za-z_][\w.]*)\s*=")


@dataclass(frozen=True)
class Built:
    """Submission text made (or changed) by the command line, and where its lines came from.

    `origins`: line number -> the option that wrote it; `inserted_at`, `inserted`:
    lines after `inserted_at` moved down by `inserted`, told back at their place
    in the file as written.
    """

    text: str
    origins: dict[int, str] = field(default_factory=dict)
    inserted_at: int = 0
    inserted: int = 0

    def explain(self, error: SubmissionError) -> str:
        """The error as the user wrote it: the option, or FILE:LINE in their own file."""
        if error.line in self.origins:
            return f"{self.origins[error.line]}: {error.message}"
        if self.inserted and error.line > self.inserted_at:
            return f"{error.source}:{error.line - self.inserted}: {error.message}"
        return str(error)


def flag_pairs(options: dict[str, object]) -> list[tuple[str, str, str]]:
    """(key, value, how it was written) for each option of FLAG_KEYS given in `options`.

    Raises ValueError (for a person) for an option whose key this version cannot take yet.
    """
    pairs = []
    for option, key in FLAG_KEYS.items():
        value = options.get(option)
        if value is None:
            continue
        written = f"--{option.replace('_', '-')} {value}"
        if key not in KEYS or key in FLAG_NOT_YET:
            raise ValueError(f"--{option.replace('_', '-')}: {NOT_YET.get(key, 'not available yet')}")
        text = str(value)
        if key == "arguments" and text.strip():
            # Typed as on a shell's command line (as the portal's field is); written in HTCondor's new syntax.
            try:
                text = join_arguments(split_words(text))
            except QuotingError as exc:
                raise ValueError(f"{written}: cannot read the arguments ({exc}); close every quote") from None
        pairs.append((key, text, written))
    return pairs


def append_pairs(texts: Iterable[str]) -> list[tuple[str, str, str]]:
    """`-a KEY=VALUE` options as (key, value, how it was written); ValueError for one without a key."""
    pairs = []
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not _KEY_OF_LINE.match(f"{key}="):
            raise ValueError(f"-a {text}: write -a KEY=VALUE, such as -a request_cpus=4")
        pairs.append((key.strip().lower(), value.strip(), f"-a {text}"))
    return pairs


def script_submission(program: str, pairs: list[tuple[str, str, str]]) -> Built:
    """The submission of `submit --script PROGRAM`: the program (relative to its own folder) and the options."""
    name = program.rsplit("/", 1)[-1]
    _check_value(name, program)
    lines = [f"executable = {_quoted(name)}"]
    origins = {1: program}
    for key, value, written in pairs:
        _check_value(value, written)
        lines.append(f"{key} = {value}")
        origins[len(lines)] = written
    return Built("\n".join(lines) + "\n", origins)


def append_to(text: str, pairs: list[tuple[str, str, str]]) -> Built:
    """`text` with each pair's key set to its value, as `condor_submit -append`: a key the file sets is
    replaced (its lines become comments, so line numbers hold), and the new lines go just before the
    first queue statement (or at the end)."""
    if not pairs:
        return Built(text)
    keys = {key for key, _, _ in pairs}
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = _KEY_OF_LINE.match(line)
        if match and match.group(1).lower() in keys:
            lines[number] = f"# replaced on the command line: {line}"
    at = next((n for n, line in enumerate(lines) if _QUEUE_STATEMENT.match(line)), len(lines))
    added = []
    for key, value, written in pairs:
        _check_value(value, written)
        added.append(f"{key} = {value}")
    origins = {at + 1 + i: written for i, (_, _, written) in enumerate(pairs)}
    lines[at:at] = added
    return Built("\n".join(lines) + "\n", origins, inserted_at=at + len(added), inserted=len(added))


def script_options(text: str, options: str, written: str) -> Built:
    """A batch script with `submit --sbatch "..."` (or `--qsub`) options: one directive line after the
    script's own, so that it overrides them (the later of two options wins, as on sbatch's command line).
    The script runs with that line in it, so the job's text says what was asked."""
    dialect = batch.dialect_of(text)
    if dialect is None:
        raise ValueError(f"{written}: the file is not a Slurm or PBS batch script (no #SBATCH or #PBS lines)")
    _check_value(options, written)
    lines = text.splitlines()
    prefix = "#SBATCH" if dialect == "slurm" else "#PBS"
    block = [
        n for n, line in enumerate(lines) if n < batch.leading_block_size(lines) and line.startswith(("#!", prefix))
    ]
    at = block[-1] + 1 if block else 0
    lines[at:at] = [f"{prefix} {options}"]
    return Built("\n".join(lines) + "\n", {at + 1: written}, inserted_at=at + 1, inserted=1)


def _check_value(value: str, written: str) -> None:
    if value and value.splitlines() != [value]:  # every line break the parser's splitlines() sees
        raise ValueError(f"{written.splitlines()[0]}...: a value is one line; remove the line break")
    if _may_start_comment(value):
        raise ValueError(f"{written}: ' #' would start a comment in the submission; put that part in quotes")


def _may_start_comment(value: str) -> bool:
    """Whether the parser could read part of `value` as a comment: a `#` first or after a space, outside
    quotes (parse.py's rule today; if the parser narrows it, this only refuses more than it must, and a
    value is never cut short in silence)."""
    quote = None
    for i, ch in enumerate(value):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or value[i - 1].isspace()):
            return True
    return False


def _quoted(name: str) -> str:
    return f'"{name}"' if re.search(r"\s|#|\"|'", name) else name
