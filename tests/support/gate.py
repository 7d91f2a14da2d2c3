"""A gate a job waits at until its test opens it, for tests that must look at a job while it runs.

A fixed `sleep` in the job races the test on a loaded machine: a CLI start
alone takes 6-8 s at load 6 on 2 cores, and a 12 s parent had ended before
its test had submitted the rest. The job connects to a socket the test
listens on and blocks reading it until open(). A file would not do: the
sandbox hides the test's folders from the job, while the node's network is
the job's by default (DCT_DEFAULT_NETWORK=host).
"""

from __future__ import annotations

import socket

from dctoolkit.nodes.worker import sandbox


class Gate:
    """A listening socket on the loopback; `command` is the shell line a job waits at it with."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        port = self._server.getsockname()[1]
        code = f"import socket; socket.create_connection(('127.0.0.1', {port})).recv(1)"
        self.command = f'{sandbox.python_executable()} -c "{code}"'

    def open(self, timeout: float = 120) -> None:
        """Let the job waiting at the gate go on; AssertionError when no job came within `timeout` s.

        Lets one job through: a job that connects later waits for the next open()."""
        self._server.settimeout(timeout)
        try:
            conn, _ = self._server.accept()
        except TimeoutError:
            raise AssertionError(f"no job came to the gate within {timeout}s") from None
        with conn:
            conn.sendall(b"1")

    def close(self) -> None:
        """Stop listening: a job still at the gate (its connection refused or reset) goes on at once."""
        self._server.close()
