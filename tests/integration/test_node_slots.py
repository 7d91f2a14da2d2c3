"""The slots a node registers are the threads its worker runs jobs on: --slots, else DCT_NODE_SLOTS."""

import pytest

from tests.support.cluster import PYTHON, wait_until

pytestmark = pytest.mark.integration


def test_a_node_registers_slots_from_its_command_line_else_from_node_slots(fresh_cluster):
    c = fresh_cluster
    c.start_node("by-flag", slots=3, env={"DCT_NODE_SLOTS": "5"})  # the command line wins
    c.nodes["by-env"] = c._spawn("by-env", [PYTHON, "worker_entry.py", "--node", "by-env"], {"DCT_NODE_SLOTS": "2"})
    wait_until(lambda: c.node("by-env", state_in=("available",)), 60, "node by-env to register")
    assert c.node("by-flag")["slots"] == 3
    assert c.node("by-env")["slots"] == 2
