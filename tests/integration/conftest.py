import pytest

from tests.support.cluster import Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster per test module: Redis, a database, the scheduler, node-1 and node-2 (one slot each)."""
    c = Cluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        c.start_node("node-1", slots=1)
        c.start_node("node-2", slots=1)
        yield c
    finally:
        c.stop()


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for tests that kill or restart parts of it."""
    c = Cluster(tmp_path / "cluster").start()
    try:
        yield c
    finally:
        c.stop()
