"""Parse every file of the intake corpus (tests/data/{condor,slurm,pbs}) and say which are accepted.

    .venv/bin/python -m bench.corpus          # counts, then each refusal's lines

Files whose name starts with `refused_` (or ends `_refused.sh` / is `not_supported.sh`) are meant to be
refused; the counts tell them apart.  The facts a file reads from beside it (a `queue ... from` list) are
read from the corpus folder; `queue ... matching` sees the corpus folder's names.
"""

from __future__ import annotations

import sys
from pathlib import Path

from dctoolkit.jobs.intake.parse import SubmissionError, SubmitFacts, parse_submission

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
LANGUAGES = {"condor": "*.sub", "slurm": "*.sh", "pbs": "*.sh"}


def meant_to_fail(path: Path) -> bool:
    return path.name.startswith("refused_") or path.stem.endswith("_refused") or path.name == "not_supported.sh"


def facts_for(folder: Path) -> SubmitFacts:
    def read_text(name: str) -> str | None:
        file = folder / name
        return file.read_text() if file.is_file() else None

    def listdir(name: str) -> list[tuple[str, bool]] | None:
        target = folder / name
        return [(p.name, p.is_dir()) for p in target.iterdir()] if target.is_dir() else None

    return SubmitFacts(
        read_text=read_text, names=lambda: [(p.name, p.is_dir()) for p in folder.iterdir()], listdir=listdir
    )


def measure() -> dict[str, list[tuple[Path, list[str]]]]:
    """language -> [(file, its refusal lines, empty when accepted)]"""
    found: dict[str, list[tuple[Path, list[str]]]] = {}
    for language, pattern in LANGUAGES.items():
        folder = DATA / language
        for path in sorted(folder.glob(pattern)):
            try:
                parse_submission(path.read_text(), path.name, facts=facts_for(folder), cluster=42)
                lines: list[str] = []
            except SubmissionError as refused:
                lines = str(refused).splitlines()
            found.setdefault(language, []).append((path, lines))
    return found


def main() -> int:
    found = measure()
    for language, results in found.items():
        real = [(p, lines) for p, lines in results if not meant_to_fail(p)]
        accepted = sum(1 for _, lines in real if not lines)
        print(f"{language}: {accepted} of {len(real)} accepted ({len(results) - len(real)} refusal examples besides)")
    for results in found.values():
        for path, lines in results:
            if lines:
                tag = "(meant to fail)" if meant_to_fail(path) else "REFUSED"
                print(f"\n{path.parent.name}/{path.name} {tag}")
                print("\n".join(f"  {line}" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
