"""Every file operation a node does on a job's folder: stage, snapshot, collect, empty, remove.

A job's folder is the job's to change at any moment, in a warm sandbox even
between two jobs (a zygote the job took over keeps running), and the node
works as root.  So nothing here follows a link the node did not make: each
step works through directory file descriptors opened with O_NOFOLLOW; a new
file is made with O_CREAT|O_EXCL, so a name already there fails instead of
being followed; modes are set with fchmod on the node's own descriptor; and
a file is read only once fstat says it is the regular file the walk saw.
Walks are loops, not recursion: a 1,100-level tree made by a job neither
raises RecursionError nor needs 1,100 descriptors to remove.

Outputs copy only the data a file really holds (SEEK_DATA/SEEK_HOLE), within
a budget.  Links, hard-linked files, FIFOs, sockets and devices are never
collected; names that are not UTF-8, folders deeper than MAX_OUTPUT_DEPTH and
paths longer than MAX_OUTPUT_PATH_BYTES are left out with a note, so nothing
in storage breaks a page later.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dctoolkit.nodes.worker.runner import SPAWN_LOCK

# Outputs deeper than this many folders are left out (with a note): the
# portal, the API and `./dct results` walk storage with pathlib, whose rglob
# recurses (RecursionError near 900 levels), and the walk here keeps one
# descriptor open per level.
MAX_OUTPUT_DEPTH = 100
# Nor a path longer than this (in bytes, below the outputs folder): whatever
# reads storage by path name must stay under the system's PATH_MAX (4,096).
MAX_OUTPUT_PATH_BYTES = 2048
# What a collected file or folder costs at least in the output budget: one
# filesystem block, so that a million empty files are not free.
BLOCK_BYTES = 4096
CHUNK_BYTES = 1 << 20
# Names shown in a note about what was left out; beyond them, a count.
NOTE_EXAMPLES = 3
NOTE_NAME_CHARS = 120

NOT_UTF8 = "a file name that is not UTF-8"
TOO_DEEP = f"folders more than {MAX_OUTPUT_DEPTH} levels deep"
TOO_LONG = f"paths longer than {MAX_OUTPUT_PATH_BYTES} bytes"
HARD_LINKED = "hard-linked files (copy them instead of linking)"
REMAPPED_OVER = "files whose name transfer_output_remaps gives another output"

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in for a file must not hold the node waiting for
# a writer; O_NOCTTY: a terminal never becomes the worker's.
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_ZEROS = memoryview(bytes(CHUNK_BYTES))


class OverBudgetError(Exception):
    """Copying on would pass the output budget."""


@dataclass
class Collected:
    """What collection did: wanted paths that were not there, notes on what was left out,
    the path at which the budget ran out ("" when it did not), and the bytes it counted."""

    missing: list[str]
    notes: list[str]
    over_budget_at: str = ""
    counted_bytes: int = 0


# --- small pure helpers ----------------------------------------------------------------------------


def with_run_bits(mode: int) -> int:
    """`mode` plus execute wherever it has read (as `chmod +x`), and always for the owner."""
    return mode | ((mode & 0o444) >> 2) | 0o100


def printable(rel: str) -> str:
    """A path as a person can read it: bytes that are not UTF-8 as \\xNN, long ones shortened."""
    text = os.fsencode(rel).decode("utf-8", "backslashreplace")
    return text if len(text) <= NOTE_NAME_CHARS else text[: NOTE_NAME_CHARS - 3] + "..."


def cost_bytes(data_bytes: int) -> int:
    """What a file holding `data_bytes` of data counts against the budget: whole blocks, one at least."""
    return max(BLOCK_BYTES, -(-data_bytes // BLOCK_BYTES) * BLOCK_BYTES)


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.listdir's surrogate escapes for bytes that are not UTF-8
        return False
    return True


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


@dataclass
class _Notes:
    """Things left out of the outputs, by why."""

    found: dict[str, list[str]] = field(default_factory=dict)

    def add(self, why: str, rel: str) -> None:
        self.found.setdefault(why, []).append(rel)

    def lines(self) -> list[str]:
        said = []
        for why, rels in self.found.items():
            names = ", ".join(printable(r) for r in sorted(rels)[:NOTE_EXAMPLES])
            more = f" and {len(rels) - NOTE_EXAMPLES} more" if len(rels) > NOTE_EXAMPLES else ""
            said.append(f"not collected: {why}: {names}{more}")
        return said


# --- descriptors ---------------------------------------------------------------------------------


@contextmanager
def _opened(path: str | Path, dir_fd: int | None = None) -> Iterator[int]:
    """A folder opened without following a link in its last component."""
    fd = os.open(path, _DIR, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def _write_all(fd: int, data: memoryview | bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def data_segments(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each stretch of `fd` below `size` that holds data; holes are skipped."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # nothing but a hole from here to the end
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # a filesystem that cannot tell
                yield pos, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def copy_data(src: int, dst: int, budget: int | None = None) -> int:
    """Copy file `src` into the empty file `dst`, holes kept as holes; returns the bytes of data read.

    Only the stretches SEEK_DATA finds are read, and chunks of zeros are not
    written, so a sparse file stays sparse.  Raises OverBudgetError before
    reading past `budget` bytes of data.  Reads no further than the size
    `src` had when it began, whatever a writer does meanwhile.
    """
    size = os.fstat(src).st_size
    read = 0
    for start, end in data_segments(src, size):
        pos = start
        while pos < end:
            want = min(CHUNK_BYTES, end - pos)
            if budget is not None and read + want > budget:
                raise OverBudgetError
            chunk = os.pread(src, want, pos)
            if not chunk:  # it shrank meanwhile
                break
            read += len(chunk)
            if _ZEROS[: len(chunk)] != chunk:
                _write_all(dst, chunk, pos)
            pos += len(chunk)
    os.ftruncate(dst, size)
    return read


# --- staging -------------------------------------------------------------------------------------


def is_empty(folder: Path) -> bool:
    """True when `folder` (a folder, not a link to one) holds nothing; OSError when it cannot be opened."""
    with _opened(folder) as fd:
        return not os.listdir(fd)


def stage_inputs(source_folder: Path, names: list[str], workdir: Path, executable: str) -> None:
    """Copy the job's files into its working folder (new, or a warm sandbox's, empty).

    The executable gets its run bit.  Raises FileExistsError when a name is
    already in the folder and the node did not put it there (a link or file
    planted for this job: nothing is written through it), other OSErrors as
    they come.  Two inputs of the same name: the last one wins.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    run_name = Path(executable).name
    made: set[str] = set()
    with _opened(workdir) as folder:
        for stored in [executable, *names]:
            name = Path(stored).name
            if name in made:
                os.unlink(name, dir_fd=folder)  # ours: unlink never follows a link
            with SPAWN_LOCK:  # see SPAWN_LOCK: no fork while a job's file is open for writing
                _stage_one(source_folder / stored, folder, name, executable=name == run_name)
            made.add(name)


def _stage_one(source: Path, folder: int, name: str, executable: bool) -> None:
    src = os.open(source, _READ)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(source))
        try:
            dst = os.open(name, _NEW, 0o644, dir_fd=folder)
        except FileExistsError:
            raise FileExistsError(
                errno.EEXIST, "already in the job's folder, and the node did not put it there", name
            ) from None
        try:
            copy_data(src, dst)
            if executable:
                os.fchmod(dst, with_run_bits(stat.S_IMODE(os.fstat(dst).st_mode)))
        finally:
            os.close(dst)
    finally:
        os.close(src)


# --- walking what a job left ---------------------------------------------------------------------


def _scan(root: int) -> tuple[dict[str, os.stat_result], _Notes]:
    """Every regular file under the open folder `root` (relative path -> lstat), and what was left out.

    Depth first with a stack of open folders, at most MAX_OUTPUT_DEPTH + 1 of them.
    """
    files: dict[str, os.stat_result] = {}
    notes = _Notes()
    stack: list[tuple[int, str, int, list[str]]] = [(os.dup(root), "", 0, os.listdir(root))]
    try:
        while stack:
            fd, prefix, depth, names = stack[-1]
            if not names:
                os.close(stack.pop()[0])
                continue
            name = names.pop()
            rel = prefix + name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not _utf8(name):
                notes.add(NOT_UTF8, rel)
            elif len(os.fsencode(rel)) >= MAX_OUTPUT_PATH_BYTES:
                notes.add(TOO_LONG, rel)
            elif stat.S_ISDIR(st.st_mode):
                if depth >= MAX_OUTPUT_DEPTH:
                    notes.add(TOO_DEEP, rel + "/")
                    continue
                entered = _enter(fd, name, st)
                if entered is not None:
                    stack.append((entered[0], rel + "/", depth + 1, entered[1]))
            elif stat.S_ISREG(st.st_mode):
                files[rel] = st
            # Links, FIFOs, sockets and devices: never collected.
    finally:
        for fd, *_ in stack:
            os.close(fd)
    return files, notes


def _enter(parent: int, name: str, seen: os.stat_result) -> tuple[int, list[str]] | None:
    """The folder `name` in `parent`, opened and listed; None when it is no longer the folder seen."""
    try:
        fd = os.open(name, _DIR, dir_fd=parent)
    except OSError:  # swapped for a link or a file meanwhile, or gone
        return None
    try:
        if _same(os.fstat(fd), seen):
            return fd, os.listdir(fd)
    except OSError:
        pass
    os.close(fd)
    return None


def snapshot(workdir: Path) -> dict[str, int]:
    """Relative path -> mtime_ns of every regular file in `workdir` (links are not followed)."""
    with _opened(workdir) as root:
        files, _ = _scan(root)
    return {rel: st.st_mtime_ns for rel, st in files.items()}


def _choose(files: dict[str, os.stat_result], before: dict[str, int], wanted: list[str]) -> tuple[list[str], list[str]]:
    """(the paths to collect, sorted; the wanted paths that are not there)."""
    if not wanted:
        return sorted(p for p, st in files.items() if before.get(p) != st.st_mtime_ns), []
    chosen: set[str] = set()
    missing = []
    for want in wanted:
        hits = {p for p in files if _under(p, want)}
        if not hits:
            missing.append(want)
        chosen |= hits
    return sorted(chosen), missing


def _under(rel: str, want: str) -> bool:
    return rel == want or rel.startswith(want.rstrip("/") + "/")


def _wanted_note(rel: str, wanted: list[str]) -> bool:
    # A note on what was left out matters when it is something the job asked for (or lies on the way to it).
    return not wanted or any(_under(rel.rstrip("/"), w) or _under(w, rel.rstrip("/")) for w in wanted)


# --- collection ----------------------------------------------------------------------------------


def collect_outputs(
    workdir: Path,
    before: dict[str, int],
    wanted: list[str],
    dest: Path,
    max_bytes: int | None = None,
    remaps: Mapping[str, str] | None = None,
) -> Collected:
    """Copy the job's outputs into `dest` (made when there is something to copy), within `max_bytes`.

    With `wanted` empty, every file the job created or changed comes back.
    `remaps` (HTCondor's transfer_output_remaps, checked at submit to stay
    below `dest`): a file's path -> the path it is stored under; a file whose
    own path a remapped one takes is left out, with a note.
    Symbolic links are never followed (a job cannot smuggle out a file it
    could not read itself), and only regular files with one link are copied.
    Once the next file would pass `max_bytes`, collection stops: that file is
    removed again and `over_budget_at` names it.
    """
    with _opened(workdir) as root:
        files, notes = _scan(root)
        chosen, missing = _choose(files, before, wanted)
        notes.found = {
            why: kept for why, rels in notes.found.items() if (kept := [r for r in rels if _wanted_note(r, wanted)])
        }
        remaps = remaps or {}
        taken = {remaps[rel] for rel in chosen if rel in remaps}
        with _Dest(dest) as out:
            for rel in chosen:
                if files[rel].st_nlink > 1:
                    notes.add(HARD_LINKED, rel)
                    continue
                if rel not in remaps and rel in taken:
                    notes.add(REMAPPED_OVER, rel)
                    continue
                try:
                    _collect_one(root, out, rel, files[rel], max_bytes, remaps.get(rel, rel))
                except OverBudgetError:
                    return Collected(missing, notes.lines(), printable(rel), out.counted)
    return Collected(missing, notes.lines(), "", out.counted)


class _Dest:
    """The outputs folder in storage, made on first use, and the folder of the last file put there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.root: int | None = None
        self.counted = 0
        self._last: tuple[tuple[str, ...], int] | None = None

    def __enter__(self) -> _Dest:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._forget()
        if self.root is not None:
            os.close(self.root)

    def _forget(self) -> None:
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def folder(self, parts: tuple[str, ...]) -> int:
        """The folder `parts` below the outputs, made as needed (each new one counted)."""
        if self.root is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self.root = os.open(self.path, _DIR)
        if self._last is not None and self._last[0] == parts:
            return self._last[1]
        self._forget()
        fd = os.dup(self.root)
        try:
            for part in parts:
                try:
                    os.mkdir(part, dir_fd=fd)
                    self.counted += BLOCK_BYTES
                except FileExistsError:
                    pass
                inner = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        self._last = (parts, fd)
        return fd


def _collect_one(root: int, out: _Dest, rel: str, seen: os.stat_result, max_bytes: int | None, stored: str) -> None:
    """Copy the job's file `rel` to `stored` below the outputs."""
    src = _open_source(root, tuple(rel.split("/")), seen)
    if src is None:
        return  # it changed since the walk: not the file that was chosen
    parts = tuple(stored.split("/"))
    try:
        folder = out.folder(parts[:-1])
        left = None if max_bytes is None else max_bytes - out.counted
        if left is not None and left < BLOCK_BYTES:
            raise OverBudgetError
        dst = os.open(parts[-1], _NEW, 0o644, dir_fd=folder)
        try:
            cost = cost_bytes(copy_data(src, dst, left))
            if left is not None and cost > left:
                raise OverBudgetError
        except BaseException:
            os.unlink(parts[-1], dir_fd=folder)  # storage keeps nothing past the budget, nor half a file
            raise
        finally:
            os.close(dst)
        out.counted += cost
    finally:
        os.close(src)


def _open_source(root: int, parts: tuple[str, ...], seen: os.stat_result) -> int | None:
    """The job's file at `parts`, opened through its folders without following a link; None when it
    is no longer the one-link regular file the walk saw."""
    here = root
    try:
        for part in parts[:-1]:
            inner = os.open(part, _DIR, dir_fd=here)
            if here != root:
                os.close(here)
            here = inner
        fd = os.open(parts[-1], _READ, dir_fd=here)
    except OSError:
        return None
    finally:
        if here != root:
            os.close(here)
    now = os.fstat(fd)
    if stat.S_ISREG(now.st_mode) and _same(now, seen) and now.st_nlink == 1:
        return fd
    os.close(fd)
    return None


# --- emptying and removing -----------------------------------------------------------------------


@dataclass
class _Level:
    name: str  # in the folder above
    st: os.stat_result
    names: list[str]  # still to remove


def _empty(top: int) -> bool:
    """Delete everything under the open folder `top`; True when all of it went.

    One folder is open at a time: the way back up is "..", checked against
    the folder that was entered, so a tree moved meanwhile stops the removal
    (False) rather than lead it anywhere else.  Nothing is followed: unlink
    removes a link itself, and a folder on another filesystem is not entered.
    """
    ok = True
    here = os.dup(top)
    levels = [_Level("", os.fstat(top), os.listdir(top))]
    try:
        while True:
            level = levels[-1]
            if level.names:
                name = level.names.pop()
                try:
                    entered = _unlink_or_enter(here, name, levels[0].st.st_dev)
                except FileNotFoundError:
                    continue
                except OSError:
                    ok = False
                    continue
                if entered is not None:
                    os.close(here)
                    here, st, names = entered
                    levels.append(_Level(name, st, names))
                continue
            if len(levels) == 1:
                return ok and not os.listdir(here)
            up = os.open("..", _DIR, dir_fd=here)
            if not _same(os.fstat(up), levels[-2].st):
                os.close(up)
                return False
            os.close(here)
            here = up
            levels.pop()
            try:
                os.rmdir(level.name, dir_fd=here)
            except FileNotFoundError:
                pass
            except OSError:
                ok = False
    finally:
        os.close(here)


def _unlink_or_enter(here: int, name: str, dev: int) -> tuple[int, os.stat_result, list[str]] | None:
    """Unlink `name` in `here`; or, for a folder, open and list it to empty it first."""
    st = os.stat(name, dir_fd=here, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=here)
        return None
    if st.st_dev != dev:
        raise OSError(errno.EXDEV, "another filesystem is mounted here", name)
    entered = _enter(here, name, st)
    if entered is None:
        raise OSError(errno.ESTALE, "changed while it was being removed", name)
    return entered[0], st, entered[1]


def empty_folder(folder: Path) -> bool:
    """Delete everything in `folder` but the folder itself; True when all of it went (never raises OSError)."""
    try:
        with _opened(folder) as fd:
            return _empty(fd)
    except OSError:
        return False


def remove_tree(path: Path) -> bool:
    """Remove `path` and all below it without following a link; True when it is gone (or never was).

    The folder holding `path` is the node's own (scratch, storage); below it, anything goes.
    """
    try:
        with _opened(path.parent) as parent:
            try:
                st = os.stat(path.name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return True
            if stat.S_ISDIR(st.st_mode):
                with _opened(path.name, dir_fd=parent) as fd:
                    _empty(fd)
                os.rmdir(path.name, dir_fd=parent)
            else:
                os.unlink(path.name, dir_fd=parent)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True
