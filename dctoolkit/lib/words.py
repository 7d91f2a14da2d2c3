"""Splits a value into words as a POSIX shell would quote them, in one pass (linear time).

`shlex.split` takes time quadratic in a long value (it grows each token one
character at a time), so a big `environment =` line could hold a web worker
for minutes.  This reads each character once and keeps shlex's POSIX rules,
which submission files rely on: blanks separate words; '...' is literal;
in "..." a backslash escapes only '"' and '\\'; outside quotes a backslash
escapes any character; '' gives an empty word; nothing is a comment.
Pure: no I/O.
"""

from __future__ import annotations

BLANKS = frozenset(" \t\r\n")


class QuotingError(ValueError):
    """A value whose quotes or backslashes do not close (the message as shlex words it)."""


def split_words(text: str) -> list[str]:
    """The words of `text`; raises QuotingError('No closing quotation' / 'No escaped character')."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if ch in BLANKS:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        in_word = True
        if ch == "'":
            close = text.find("'", i + 1)
            if close < 0:
                raise QuotingError("No closing quotation")
            word.append(text[i + 1 : close])
            i = close + 1
        elif ch == '"':
            i = _double_quoted(text, i + 1, word)
        elif ch == "\\":
            if i + 1 >= end:
                raise QuotingError("No escaped character")
            word.append(text[i + 1])
            i += 2
        else:
            word.append(ch)
            i += 1
    if in_word:
        words.append("".join(word))
    return words


def _double_quoted(text: str, i: int, word: list[str]) -> int:
    """Append the inside of a "..." that starts at `i` to `word`; return the index after its close."""
    end = len(text)
    while i < end:
        ch = text[i]
        if ch == '"':
            return i + 1
        if ch == "\\" and i + 1 >= end:
            raise QuotingError("No escaped character")
        if ch == "\\" and text[i + 1] in '"\\':
            word.append(text[i + 1])
            i += 2
            continue
        word.append(ch)
        i += 1
    raise QuotingError("No closing quotation")
