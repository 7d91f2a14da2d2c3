"""HTCondor's submit description language, as `condor_submit` reads it: statements, macros, `queue`,
and the two syntaxes of `arguments` and `environment`.

Pure: no file system, no clock, no process environment.  What a statement needs from outside (a
`queue ... from FILE` list, the names `queue ... matching` globs over, `$ENV(NAME)`) comes in as
arguments, so that the parser stays testable alone.  Problems raise `LanguageError(message)`; the
caller adds the file and line.

Where the HTCondor manual gives an example (arguments, environment, queue forms) the unit tests
check its exact result; `htcondor2.Submit` (the `htcondor` wheel) served as the oracle for how
queue item lists split (see tests/unit/test_condor_language.py).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

# How deep a macro may refer to macros: HTCondor stops a self-referring macro the same way.
MAX_MACRO_DEPTH = 32
# The longest value macros may expand to (characters): the submission file's own limit, 1 MB.
MAX_EXPANDED_CHARS = 1024 * 1024
# A queue statement's count ("queue N") above this is refused before anything is built.
MAX_QUEUE_COUNT = 10_000_000


class LanguageError(ValueError):
    """A statement HTCondor's language does not allow, or one dctoolkit refuses; the message says how to fix it."""


@dataclass(frozen=True)
class Assignment:
    """`key = value` (the key as written, so that `+Attr` and `MY.Attr` keep their case)."""

    key: str
    value: str
    line: int


@dataclass(frozen=True)
class QueueStatement:
    """`queue ...`: the text after the word, and the lines of an inline `( ... )` list (None without one)."""

    args: str
    inline: tuple[str, ...] | None
    line: int


Statement = Assignment | QueueStatement


@dataclass(frozen=True)
class QueuePlan:
    """What one queue statement makes: `count` jobs per row; each row binds `names` to its values."""

    count: int
    names: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    source: str  # "count", "in", "from", "matching": for messages
    file: str = ""  # the `from FILE` as written ("" for an inline list)
    indices: tuple[int, ...] = ()  # each row's place in the list before the slice: $(ItemIndex)

    def item_index(self, row: int) -> int:
        return self.indices[row] if row < len(self.indices) else row


_QUEUE_WORD = re.compile(r"^queue(?:\s+(?P<args>.*))?$", re.IGNORECASE | re.DOTALL)
_UNSUPPORTED_COMMANDS = re.compile(r"^(if|elif|else|endif|include|error|warning)\b", re.IGNORECASE)


def read_statements(text: str) -> tuple[list[Statement], list[tuple[int, str]]]:
    """The statements of a submit file, and the problems found while reading it (line, message).

    Follows condor_submit: blank lines and lines starting with `#` are skipped; a line ending in `\\`
    goes on on the next line; `queue ... (` takes the lines up to a `)` as its item list.
    """
    statements: list[Statement] = []
    problems: list[tuple[int, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number = i + 1
        line, i = _logical_line(lines, i)
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        queue = _QUEUE_WORD.match(line)
        if queue and not re.match(r"queue\s*=", line, re.IGNORECASE):
            args = (queue.group("args") or "").strip()
            inline = None
            if args.endswith("(") or (args.count("(") > args.count(")")):
                inline, i, closed = _inline_list(lines, i, args[args.rindex("(") + 1 :])
                args = args[: args.rindex("(")].strip()
                if not closed:
                    problems.append((number, "the queue statement's '(' list is never closed; end it with ')'"))
            statements.append(QueueStatement(args, inline, number))
            continue
        if _UNSUPPORTED_COMMANDS.match(line) and "=" not in line:
            word = line.split()[0].lower()
            problems.append(
                (
                    number,
                    f"'{word}' statements are not supported; write the submit file without if/include "
                    "(one file per variant, or a queue statement with a list of items)",
                )
            )
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip() or re.search(r"\s", key.strip()):
            problems.append((number, f"expected 'key = value' or a queue statement, got '{line[:60]}'"))
            continue
        if key.rstrip().endswith("@"):
            problems.append((number, "multi-line '@=' values are not supported; write the value on one line"))
            continue
        statements.append(Assignment(key.strip(), value.strip(), number))
    return statements, problems


def _logical_line(lines: list[str], i: int) -> tuple[str, int]:
    """The line at `i` joined with the lines a trailing backslash continues onto; the index after it."""
    parts = []
    while i < len(lines):
        raw = lines[i].rstrip()
        i += 1
        if raw.endswith("\\") and not raw.lstrip().startswith("#"):
            parts.append(raw[:-1])
            continue
        parts.append(raw)
        break
    return " ".join(p.strip() for p in parts), i


def _inline_list(lines: list[str], i: int, rest: str) -> tuple[tuple[str, ...], int, bool]:
    """Item lines of `queue ... (` up to the closing `)`; the index after it; whether it was closed."""
    items: list[str] = []
    if rest.strip():
        if rest.rstrip().endswith(")"):
            return (rest.rstrip()[:-1],), i, True
        items.append(rest)
    while i < len(lines):
        raw = lines[i].strip()
        i += 1
        if raw.endswith(")"):
            if raw[:-1].strip():
                items.append(raw[:-1])
            return tuple(items), i, True
        items.append(raw)
    return tuple(items), i, False


# --- macros --------------------------------------------------------------------------------------

_MACRO = re.compile(r"\$(?P<func>[A-Za-z_]*)\((?P<body>[^()]*)\)")


def has_macro(text: str) -> bool:
    return "$" in text and _MACRO.search(text) is not None


def expand(text: str, lookup: Callable[[str], str | None], env: Mapping[str, str]) -> str:
    """`text` with every `$(NAME)`, `$(NAME:default)`, `$ENV(NAME)` and `$F[npdxqba](NAME)` replaced.

    `lookup(name)` gives a macro's raw value (case-insensitive, as HTCondor), or None when it is not
    defined; values are expanded again (up to MAX_MACRO_DEPTH).  An undefined macro without a default is
    an error (HTCondor would put in nothing; a typo should not pass).  `$$(...)` is match-time
    substitution, which needs a pool's machine ads: refused.  A value that grows past
    MAX_EXPANDED_CHARS (macros that double each other) is refused.
    """
    if "$" not in text:
        return text
    return _Expander(lookup, env).expand(text, 0)


class _Expander:
    """One expansion: each macro is expanded once (so `a = $(b)$(b)`, `b = $(c)$(c)`, ... costs linear time)."""

    def __init__(self, lookup: Callable[[str], str | None], env: Mapping[str, str]) -> None:
        self.lookup, self.env = lookup, env
        self.done: dict[str, str] = {}

    def expand(self, text: str, depth: int) -> str:
        if "$" not in text:
            return text
        if depth > MAX_MACRO_DEPTH:
            raise LanguageError(
                f"macros refer to each other more than {MAX_MACRO_DEPTH} deep (a macro that uses itself?)"
            )
        if "$$(" in text:
            raise LanguageError(
                "'$$(...)' is HTCondor's match-time substitution (a value of the machine the job lands on), "
                "which dctoolkit does not have; write the value itself"
            )
        result = _MACRO.sub(lambda m: self.one(m.group("func"), m.group("body"), depth), text)
        if len(result) > MAX_EXPANDED_CHARS:
            raise LanguageError(
                f"a value grows to more than {MAX_EXPANDED_CHARS:,} characters as its macros expand; "
                "write shorter values (do macros repeat each other?)"
            )
        return result

    def one(self, func: str, body: str, depth: int) -> str:
        name, colon, default = body.partition(":")
        name = name.strip()
        upper = func.upper()
        if upper == "ENV":
            value = self.env.get(name)
            if value is None:
                if colon:
                    return default
                raise LanguageError(f"$ENV({name}): '{name}' is not set in the environment of the submitting shell")
            return value
        if upper.startswith("F") and set(upper[1:]) <= set("NPDXQBA"):
            return _file_parts(upper[1:], self.macro(name, "", False, depth))
        if upper == "SUBSTR":
            return self.substr(body, depth)
        if upper in ("INT", "REAL", "RANDOM_CHOICE", "RANDOM_INTEGER", "CHOICE"):
            raise LanguageError(f"${func}(...) is not supported; compute the value beforehand and write it in")
        if func:
            raise LanguageError(f"'${func}(...)' is not a macro function HTCondor knows; write $(NAME)")
        return self.macro(name, default, bool(colon), depth)

    def substr(self, body: str, depth: int) -> str:
        """HTCondor's `$SUBSTR(name, start[, length])`: from index `start` (negative: from the end), `length`
        characters (negative: all but that many at the end; none: to the end)."""
        name, *numbers = (part.strip() for part in body.split(","))
        if not 1 <= len(numbers) <= 2 or not all(re.fullmatch(r"-?[0-9]{1,9}", n) for n in numbers):
            raise LanguageError(
                f"$SUBSTR({body}): write $SUBSTR(NAME, START) or $SUBSTR(NAME, START, LENGTH) with whole numbers"
            )
        value = self.macro(name, "", False, depth)
        start = max(0, len(value) + int(numbers[0])) if int(numbers[0]) < 0 else int(numbers[0])
        if len(numbers) == 1:
            return value[start:]
        length = int(numbers[1])
        return value[start : start + length] if length >= 0 else value[start : max(start, len(value) + length)]

    def macro(self, name: str, default: str, has_default: bool, depth: int) -> str:
        key = name.lower()
        if key not in self.done:
            raw = _macro_value(name, self.lookup)
            if raw is None:
                if has_default:
                    return self.expand(default, depth + 1)
                raise LanguageError(
                    f"'$({name})' is not defined; define it with a line '{name} = ...', "
                    f"or use $({name}:default) for a default"
                )
            self.done[key] = self.expand(raw, depth + 1)
        return self.done[key]


def _macro_value(name: str, lookup: Callable[[str], str | None]) -> str | None:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name):
        raise LanguageError(f"'$({name})' is not a macro name; macro names are letters, digits and '_'")
    return lookup(name)


def _file_parts(flags: str, path: str) -> str:
    """HTCondor's `$Fn(x)` family: n name, x extension, p folder, d parent folder name, q quoted, b/a bare."""
    folder, _, base = path.rpartition("/")
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    if not set(flags) & set("NXPD"):  # only quoting or bare flags: the whole path
        return f'"{path}"' if "Q" in flags else path
    out = ""
    if "P" in flags:
        out += f"{folder}/" if folder else ""
    elif "D" in flags:
        parent = folder.rstrip("/").rpartition("/")[2]
        out += f"{parent}/" if parent else ""
    if "N" in flags:
        out += stem
    if "X" in flags:
        out += f".{ext}" if ext else ""
    if "Q" in flags:
        out = f'"{out}"'
    return out


# --- queue statements ----------------------------------------------------------------------------

_SLICE = re.compile(r"^\[\s*(-?\d*)\s*(?::\s*(-?\d*)\s*)?(?::\s*(-?\d*)\s*)?\]\s*")


def plan_queue(
    args: str,
    inline: Sequence[str] | None,
    read_file: Callable[[str], str],
    list_names: Callable[[], Sequence[tuple[str, bool]]],
) -> QueuePlan:
    """The jobs one queue statement makes (its text already macro-expanded).

    Forms (HTCondor manual, condor_submit): `queue [N]`, `queue [N] [VAR] in [slice] ITEMS`,
    `queue [N] [VAR] matching [files|dirs] [slice] GLOBS`, `queue [N] [VARS] from [slice] FILE|( ... )`.
    `read_file(name)` gives a `from` file's text (raises LanguageError when missing); `list_names()` the
    (name, is_folder) pairs of the submission's folder for `matching`.
    """
    head, keyword, rest = _split_keyword(args)
    count, names = _count_and_names(head, keyword)
    if not keyword:
        return QueuePlan(count, (), ((),), "count")
    step = _SLICE.match(rest)
    cut = slice(None)
    if step:
        cut = slice(*(int(g) if g not in (None, "", "-") else None for g in step.groups()))
        rest = rest[step.end() :]
    names = names or ("Item",)
    rows: tuple[tuple[str, ...], ...]
    if keyword == "in":
        if len(names) > 1:
            raise LanguageError("'queue ... in' binds one variable; use 'queue A, B from (...)' for several")
        text = " ".join(inline) if inline is not None else _strip_parens(rest)
        rows = tuple((item,) for item in _words(text))
    elif keyword == "matching":
        if len(names) > 1:
            raise LanguageError("'queue ... matching' binds one variable; use 'queue A, B from (...)' for several")
        rows = tuple((name,) for name in _matching(rest if inline is None else " ".join(inline), list_names))
    else:
        if inline is None and rest.rstrip().endswith("|"):
            raise LanguageError(
                "'queue ... from COMMAND |' runs a program at submission, which dctoolkit does not do; "
                "run it yourself and write its output to a file: queue ... from items.txt"
            )
        if inline is None and rest.strip().startswith("(") and rest.strip().endswith(")"):
            inline = (_strip_parens(rest),)
        if inline is None and not rest.strip():
            raise LanguageError("'queue ... from' needs a file name or a '( ... )' list")
        text = "\n".join(inline) if inline is not None else read_file(rest.strip())
        lines = [line.strip() for line in text.splitlines()]
        rows = tuple(_split_row(line, len(names)) for line in lines if line and not line.startswith("#"))
    indices = tuple(range(len(rows)))[cut]
    file = rest.strip() if keyword == "from" and inline is None else ""
    return QueuePlan(count, names, rows[cut], keyword, file, indices)


def _split_keyword(args: str) -> tuple[str, str, str]:
    match = re.search(r"(?:^|\s)(in|from|matching)(?:\s|\(|\[|$)", args, re.IGNORECASE)
    if not match:
        return args.strip(), "", ""
    return args[: match.start(1)].strip(), match.group(1).lower(), args[match.end(1) :].strip()


def _count_and_names(head: str, keyword: str) -> tuple[int, tuple[str, ...]]:
    words = [w for w in re.split(r"[\s,]+", head) if w]
    count = 1
    if words and re.fullmatch(r"[+-]?[0-9]+", words[0]):
        count = int(words.pop(0))
        if count < 0:
            raise LanguageError(f"queue {count}: the count cannot be negative; write queue 0 to queue nothing")
        if count > MAX_QUEUE_COUNT:
            raise LanguageError(f"queue {count:,} is more jobs than dctoolkit takes; queue at most {MAX_QUEUE_COUNT:,}")
    elif words and re.fullmatch(r"[0-9+*/()-]+", words[0]):
        raise LanguageError(f"queue {words[0]}: write the count as a plain number, such as queue 10")
    if words and not keyword:
        raise LanguageError(
            f"cannot read 'queue {head}': after the count comes 'VAR in (...)', 'VAR from FILE' or 'VAR matching GLOB'"
        )
    for word in words:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word):
            raise LanguageError(f"'{word}' is not a variable name for the queue statement; use letters, digits, '_'")
    return count, tuple(words)


def _strip_parens(text: str) -> str:
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        return text[1:-1]
    return text


def _words(text: str) -> list[str]:
    """Items of `queue ... in`: separated by commas and/or blanks, no quoting (as condor_submit)."""
    return [w for w in re.split(r"[\s,]+", text) if w]


def _split_row(line: str, width: int) -> tuple[str, ...]:
    """One `from` line: each field ends at one comma or blank (then blanks are skipped); the last variable
    takes the rest of the line (as htcondor2.Submit: `x1 ,, y1` gives `x1` and `,, y1`)."""
    values: list[str] = []
    rest = line
    for _ in range(width - 1):
        match = re.match(r"([^\s,]*)[\s,]?", rest)
        values.append(match.group(1) if match else "")
        rest = rest[match.end() :].lstrip() if match else ""
    values.append(rest.strip())
    return tuple(values)


def _matching(text: str, list_names: Callable[[], Sequence[tuple[str, bool]]]) -> list[str]:
    words = _words(_strip_parens(text))
    kind = ""
    if words and words[0].lower() in ("files", "dirs"):
        kind = words.pop(0).lower()
    if not words:
        raise LanguageError("'queue ... matching' needs a pattern, such as queue f matching *.csv")
    for pattern in words:
        if "/" in pattern:
            raise LanguageError(f"matching '{pattern}': patterns match names in the submission's own folder, no '/'")
    found = []
    for name, is_folder in sorted(list_names()):
        if (kind == "files" and is_folder) or (kind == "dirs" and not is_folder) or name.startswith("."):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in words):
            found.append(f"{name}/" if is_folder else name)
    return found


# --- arguments and environment -------------------------------------------------------------------


def split_arguments(value: str) -> list[str]:
    """The argv `condor_submit` makes of an `arguments` value.

    New syntax (the value in double quotes): blanks separate; single quotes group, with `''` a literal
    quote inside them; `""` is a literal double quote; a backslash is an ordinary character.  Old
    syntax (no surrounding double quotes): blanks separate, `\\"` is a double quote, nothing groups.
    """
    value = value.strip()
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"') or _ends_in_escaped_quote(value):
            raise LanguageError(
                "an arguments value that starts with '\"' is in the new syntax and must end with '\"'; "
                "write it like arguments = \"one 'two words' three\""
            )
        return _new_syntax_words(value[1:-1], "arguments")
    return [word.replace('\\"', '"') for word in value.split()]


def _ends_in_escaped_quote(value: str) -> bool:
    # `"a ""b"""` ends in a doubled quote plus the closing one: an odd run of quotes at the end closes.
    inner = value[1:]
    run = len(inner) - len(inner.rstrip('"'))
    return run % 2 == 0


def _new_syntax_words(text: str, what: str) -> list[str]:
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in " \t":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == '"':
            if text[i : i + 2] != '""':
                raise LanguageError(f'a lone \'"\' inside the {what}; write "" for a literal double quote')
            word.append('"')
            i += 2
        elif ch == "'":
            i = _single_quoted(text, i + 1, word, what)
        else:
            word.append(ch)
            i += 1
    if in_word:
        words.append("".join(word))
    return words


def _single_quoted(text: str, i: int, word: list[str], what: str) -> int:
    while i < len(text):
        if text[i] == "'":
            if text[i : i + 2] == "''":
                word.append("'")
                i += 2
                continue
            return i + 1
        if text[i : i + 2] == '""':
            word.append('"')
            i += 2
            continue
        word.append(text[i])
        i += 1
    raise LanguageError(f"a single quote in the {what} is never closed; close it, or write '' for a literal one")


def split_environment(value: str) -> list[str]:
    """The `NAME=value` entries of an `environment` value, as condor_submit splits them.

    New syntax (the value in double quotes): entries separated by blanks, quoted as in `arguments`.
    Old syntax: entries separated by `;`, and quotes have no meaning.
    """
    value = value.strip()
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"') or _ends_in_escaped_quote(value):
            raise LanguageError(
                "an environment value that starts with '\"' is in the new syntax and must end with '\"'; "
                "write it like environment = \"A=1 B='two words'\""
            )
        return _new_syntax_words(value[1:-1], "environment")
    return [entry.strip() for entry in value.split(";") if entry.strip()]


TRUE_WORDS = frozenset(("true", "yes", "t", "y", "1"))
FALSE_WORDS = frozenset(("false", "no", "f", "n", "0"))


def parse_bool(value: str) -> bool | None:
    """HTCondor's booleans (true/false, yes/no, t/f, 1/0, any case); None for anything else."""
    word = value.strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


def join_arguments(argv: Sequence[str]) -> str:
    """An `arguments` value in the new syntax that split_arguments reads back as exactly `argv`."""
    words = []
    for word in argv:
        quoted = word.replace('"', '""')
        if not word or any(ch in word for ch in " \t'"):
            quoted = "'" + quoted.replace("'", "''") + "'"
        words.append(quoted)
    return '"' + " ".join(words) + '"'


def split_remaps(value: str) -> list[tuple[str, str]]:
    """`transfer_output_remaps = "a = b; c = d"` -> [(a, b), (c, d)]: each output file's name and the name it
    comes back under.  As condor_submit: the whole value in double quotes (or none), `;` between remaps,
    and a backslash escapes `=`, `;` or itself in a name; blanks around names are dropped."""
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    remaps: list[tuple[str, str]] = []
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i <= len(text):
        ch = text[i] if i < len(text) else ";"
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if ch in "=;":
            parts.append("".join(current).strip())
            current = []
            if ch == ";":
                remaps.extend(_remap(parts))
                parts = []
        else:
            current.append(ch)
        i += 1
    return remaps


def _remap(parts: list[str]) -> list[tuple[str, str]]:
    if parts == [""]:
        return []  # an empty remap ("a = b;" ends with one)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        shown = " = ".join(parts)
        raise LanguageError(f"'{shown[:60]}' is not 'name = newname'; separate remaps with ';'")
    return [(parts[0], parts[1])]
