"""Serving a file as it grows, in bounded pieces: HTTP Range (RFC 9110 section 14) and byte offsets.

`byte_range` decides (pure); `file_part` streams one part of an open file,
never holding more than one chunk in memory, so a 1 GB stdout costs the server
what a 64 KB one does.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator

from django.http import HttpResponse, StreamingHttpResponse

CHUNK_BYTES = 256 * 1024
_RANGE = re.compile(r"^\s*bytes\s*=\s*([0-9]{0,19})\s*-\s*([0-9]{0,19})\s*$")


class UnsatisfiableRangeError(ValueError):
    """A Range that asks for no byte of the file (answered 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, that a single-range `Range` header asks of a `size`-byte file.

    None: no Range, or one this server ignores (several ranges, bad syntax), so
    the whole file is sent, as RFC 9110 allows.  Raises UnsatisfiableRangeError (416).
    """
    match = _RANGE.match(header or "")
    if not match or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # bytes=-N: the last N bytes
        if int(last) == 0 or size == 0:
            raise UnsatisfiableRangeError
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise UnsatisfiableRangeError
    return start, end


def open_plain(path: os.PathLike | str) -> int | None:
    """A read descriptor of `path` if it is a plain file reached without following a link, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def _chunks(fd: int, start: int, length: int) -> Iterator[bytes]:
    try:
        os.lseek(fd, start, os.SEEK_SET)
        while length > 0:
            data = os.read(fd, min(CHUNK_BYTES, length))
            if not data:
                return
            length -= len(data)
            yield data
    finally:
        os.close(fd)


def file_part(
    fd: int | None, start: int, length: int, status: int = 200, buffer_up_to: int = 0, **kwargs
) -> HttpResponse:
    """A streamed response of `length` bytes of `fd` from `start` (an empty one when fd is None).

    Parts of at most `buffer_up_to` bytes are read at once into a plain
    response (cheaper for the many small logs).  Takes ownership of `fd`
    (closed when the body has been sent, or dropped).
    """
    if fd is None or length <= 0:
        if fd is not None:
            os.close(fd)
        response = HttpResponse(b"", status=status, **kwargs)
        length = 0
    elif length <= buffer_up_to:
        data = b"".join(_chunks(fd, start, length))
        response = HttpResponse(data, status=status, **kwargs)
        length = len(data)
    else:
        # mypy: a StreamingHttpResponse stands in for an HttpResponse: callers only set headers and return it.
        response = StreamingHttpResponse(_chunks(fd, start, length), status=status, **kwargs)  # type: ignore[assignment]
    response["Content-Length"] = str(length)
    response["Accept-Ranges"] = "bytes"
    return response


def ranged_file(fd: int | None, range_header: str | None, buffer_up_to: int = 0, **kwargs) -> HttpResponse:
    """The whole file (200), the part a Range asks (206 with Content-Range), or 416 with `bytes */size`."""
    size = os.fstat(fd).st_size if fd is not None else 0
    try:
        wanted = byte_range(range_header, size)
    except UnsatisfiableRangeError:
        if fd is not None:
            os.close(fd)
        response = HttpResponse(b"", status=416)
        response["Content-Range"] = f"bytes */{size}"
        response["Accept-Ranges"] = "bytes"
        return response
    if wanted is None:
        return file_part(fd, 0, size, buffer_up_to=buffer_up_to, **kwargs)
    first, last = wanted
    response = file_part(fd, first, last - first + 1, status=206, buffer_up_to=buffer_up_to, **kwargs)
    response["Content-Range"] = f"bytes {first}-{last}/{size}"
    return response
