import pytest

from tests.support.cluster import Cluster


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
