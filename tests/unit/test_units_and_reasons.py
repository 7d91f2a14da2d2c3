import pytest

from dctoolkit.jobs.scheduling.reasons import NodeView, Request, WaitFacts, explain_wait
from dctoolkit.jobs.templatetags.portal import duration, size_mb
from dctoolkit.lib.units import UnitError, format_seconds, parse_duration, parse_size_mb


@pytest.mark.parametrize(
    ("text", "mb"), [("512MB", 512), ("4GB", 4096), ("1.5g", 1536), ("2048", 2048), ("1TB", 1048576)]
)
def test_sizes(text, mb):
    assert parse_size_mb(text) == mb


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("45", 45)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_lists_forms():
    with pytest.raises(UnitError, match="write it like 90s, 10m, 2h"):
        parse_duration("1 fortnight")


def test_format_seconds():
    assert [format_seconds(s) for s in (0.031, 5.25, 42, 185, 7260)] == ["0.03s", "5.2s", "42s", "3m05s", "2h01m"]


def test_format_seconds_counts_days_past_a_day():
    assert [format_seconds(s) for s in (86399, 86400, 90061.5, 365 * 86400)] == ["23h59m", "1d00h", "1d01h", "365d00h"]


def test_portal_writes_durations_and_sizes_as_the_command_line_does():
    assert [duration(s) for s in (2.34, 75, 185, 7260, 90061.5)] == ["2.3s", "1m15s", "3m05s", "2h01m", "1d01h"]
    assert [duration(None), duration(float("inf")), size_mb(None)] == ["–", "–", "–"]
    assert [size_mb(512), size_mb(7782.4)] == ["512 MB", "7.6 GB"]


def view(name="node-1", online=True, cpus=2, free=0, mem=4096, free_mem=4096, drained=False):
    return NodeView(name, online, online and not drained, cpus, mem, 0, free, free_mem, 0, drained)


def test_reasons_read_like_plain_words():
    req = Request("queued", 1, 256, 0)
    assert explain_wait(Request("held", 1, 256, 0), WaitFacts(())) == "held by its owner; release it to queue it again"
    assert explain_wait(req, WaitFacts(())) == (
        "no node is online to run it; start one with 'python worker_entry.py --node NAME'"
    )
    assert explain_wait(Request("queued", 1, 256, 0, node="node-3"), WaitFacts((view("node-3", online=False),))) == (
        "pinned to node-3, which is offline"
    )
    assert explain_wait(Request("queued", 8, 256, 0), WaitFacts((view(cpus=4),))) == (
        "needs 8 cpus, but the largest online node has 4; no node can run it"
    )
    assert explain_wait(req, WaitFacts((view(),), ahead_own=3)) == "behind 3 earlier jobs of the same user"
    assert explain_wait(req, WaitFacts((view(),), ahead_others=1)) == (
        "behind 1 job of users with lower usage (fair share)"
    )
    assert explain_wait(req, WaitFacts((view(), view("node-2")))) == "waiting for a free cpu: all 2 nodes are busy"
    assert explain_wait(Request("queued", 4, 256, 0), WaitFacts((view(cpus=4, free=2),))) == (
        "needs 4 cpus, node-1 has 2 free; it would start now on node-1 with request_cpus = 2"
    )
    assert explain_wait(Request("queued", 1, 3000, 0), WaitFacts((view(free=1, free_mem=2048),))) == (
        "needs 2.9 GB memory, node-1 has 2.0 GB free; it would start now on node-1 with request_memory = 2048MB"
    )
    assert explain_wait(Request("queued", 1, 256, 0, previous="node lost"), WaitFacts((view(),))) == (
        "requeued (node lost); waiting for a free cpu: node-1, the only node, is busy"
    )
