from collections.abc import Iterator

import pytest

from tests.support.cluster import Cluster
from tests.support.gate import Gate
from tests.support.mail import SmtpServer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster per test module: Redis, a database, the scheduler, node-1 and node-2 (one slot each)."""
    with Cluster(tmp_path_factory.mktemp("cluster")) as c:
        c.start_nodes({"node-1": 1, "node-2": 1})
        yield c


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for tests that kill or restart parts of it."""
    with Cluster(tmp_path / "cluster") as c:
        yield c


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    """One SMTP server for a test module, with an inbox the test reads."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def gate() -> Iterator[Gate]:
    """A gate a job waits at until the test opens it (tests/support/gate.py); closed, it lets the job go."""
    opened = Gate()
    yield opened
    opened.close()
