"""Desktop nodes, the pure parts: the settings, the owner's idle time, who counts as present, the
scheduler's refusal to place on a desktop whose owner is back, and the reason a job waits for one."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest

from dctoolkit.accounts.fairshare import charged_start, running_charge
from dctoolkit.jobs.scheduling.policy import FreeNode, QueuedJob, pick_assignments
from dctoolkit.jobs.scheduling.reasons import NodeView, Request, WaitFacts, explain_wait
from dctoolkit.nodes.worker import desktop
from dctoolkit.nodes.worker.desktop import (
    IdleSourceError,
    desktop_config,
    owner_is_present,
    parse_idle_seconds,
    parse_logind,
    read_idle_seconds,
    source_is_file,
)

# --- settings ------------------------------------------------------------------------------


def test_defaults_when_unset():
    config = desktop_config({})
    assert (config.policy, config.is_desktop, config.problems) == ("", False, ())
    assert config.idle_minutes == 15.0 and config.suspend_max_seconds == 600.0


def test_a_desktop_with_every_setting():
    config = desktop_config(
        {"DCT_NODE_POLICY": "Desktop", "DCT_IDLE_MINUTES": "0.5", "DCT_IDLE_SOURCE": "/run/idle",
         "DCT_SUSPEND_MAX": "90s", "DCT_NODE_OWNER": "alice"}
    )  # fmt: skip
    assert config.is_desktop and config.problems == ()
    assert (config.idle_minutes, config.idle_source, config.suspend_max_seconds, config.owner) == (
        0.5, "/run/idle", 90.0, "alice",
    )  # fmt: skip


def test_every_bad_value_is_named_at_once():
    config = desktop_config(
        {"DCT_NODE_POLICY": "laptop", "DCT_IDLE_MINUTES": "soon", "DCT_SUSPEND_MAX": "forever",
         "DCT_NODE_OWNER": "bob smith"}
    )  # fmt: skip
    text = "\n".join(config.problems)
    assert len(config.problems) == 4, text
    for name in ("DCT_NODE_POLICY='laptop'", "DCT_IDLE_MINUTES='soon'", "DCT_SUSPEND_MAX='forever'", "DCT_NODE_OWNER"):
        assert name in text
    assert "use desktop" in text and "number of minutes" in text
    assert config.policy == "" and config.idle_minutes == 15.0  # the defaults stand in


@pytest.mark.parametrize("minutes", ["-1", "nan", "inf", "1e9"])
def test_idle_minutes_out_of_range(minutes):
    config = desktop_config({"DCT_NODE_POLICY": "desktop", "DCT_IDLE_MINUTES": minutes})
    assert config.problems and "DCT_IDLE_MINUTES" in config.problems[0]


def test_idle_settings_on_a_node_that_is_no_desktop():
    (problem,) = desktop_config({"DCT_IDLE_MINUTES": "5", "DCT_SUSPEND_MAX": "1h"}).problems
    assert problem == (
        "DCT_IDLE_MINUTES, DCT_SUSPEND_MAX set, but DCT_NODE_POLICY is not desktop: set DCT_NODE_POLICY=desktop"
    )


def test_an_unclosed_quote_in_the_idle_command():
    config = desktop_config({"DCT_NODE_POLICY": "desktop", "DCT_IDLE_SOURCE": "xprintidle 'oops"})
    assert config.problems and "DCT_IDLE_SOURCE" in config.problems[0]


# --- the owner's idle time ---------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("12\n", 12.0), (" 0 ", 0.0), ("3.5", 3.5), ("3600\n\n", 3600.0)])
def test_idle_seconds_parsed(text, seconds):
    assert parse_idle_seconds(text, "the file") == seconds


@pytest.mark.parametrize("text", ["", "soon", "-4", "inf", "12 34"])
def test_idle_seconds_refused(text):
    with pytest.raises(IdleSourceError, match="the file gave"):
        parse_idle_seconds(text, "the file")


def test_file_or_command():
    assert source_is_file("/run/user/1000/idle", exists=True, executable=False)
    assert source_is_file("/run/user/1000/idle", exists=False, executable=False)  # not written yet: a file
    assert not source_is_file("/usr/local/bin/idle-seconds", exists=True, executable=True)
    assert not source_is_file("xprintidle", exists=False, executable=False)
    assert not source_is_file("/usr/bin/awk {print} /x", exists=False, executable=False)


def test_read_from_a_file_and_from_a_command(tmp_path):
    idle = tmp_path / "idle"
    idle.write_text("42\n")
    assert read_idle_seconds(str(idle)) == 42.0
    script = tmp_path / "idle-seconds"
    script.write_text("#!/bin/sh\necho 7\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    assert read_idle_seconds(str(script)) == 7.0
    assert read_idle_seconds("/bin/echo 9") == 9.0


def test_unreadable_sources_say_why(tmp_path):
    with pytest.raises(IdleSourceError, match="could not be read"):
        read_idle_seconds(str(tmp_path / "missing"))
    with pytest.raises(IdleSourceError, match="exited 1"):
        read_idle_seconds("/bin/false")
    with pytest.raises(IdleSourceError, match="could not run"):
        read_idle_seconds("no-such-idle-program-here")


def test_logind_sessions():
    now_us = 1_000_000_000_000
    idle_since = now_us - 300 * 1_000_000
    shown = f"IdleHint=yes\nIdleSinceHint={idle_since}\nClass=user\n\nIdleHint=no\nIdleSinceHint=0\nClass=greeter\n"
    assert parse_logind(shown, now_us) == 300.0  # the greeter is no owner
    assert parse_logind(shown + "\nIdleHint=no\nIdleSinceHint=0\nClass=user\n", now_us) == 0.0  # someone active
    assert parse_logind("", now_us) is None


# --- who counts as present ---------------------------------------------------------------


def test_present_until_idle_long_enough():
    assert owner_is_present(59.0, 1.0)
    assert not owner_is_present(60.0, 1.0)
    assert owner_is_present(None, 1.0)  # unknown idle time: never lend on a guess


def test_i_need_it_now_counts_idle_from_the_press():
    assert owner_is_present(3600.0, 1.0, since_reclaim=10.0)
    assert not owner_is_present(3600.0, 1.0, since_reclaim=61.0)


def test_observe_keeps_a_reclaim_until_the_next_look(tmp_path):
    idle = tmp_path / "idle"
    idle.write_text("3600")
    config = desktop_config({"DCT_NODE_POLICY": "desktop", "DCT_IDLE_MINUTES": "0.01", "DCT_IDLE_SOURCE": str(idle)})
    desktop.enable(True)
    try:
        assert not desktop.observe(config, None).present and not desktop.pause_wanted()
        # A press seen long after it was made still vacates (once), whatever the idle time says.
        seen = desktop.observe(config, since_reclaim=999.0, new_reclaim=True)
        assert seen.present and seen.reclaimed and desktop.vacate_wanted()
        assert not desktop.observe(config, since_reclaim=1000.0).present and not desktop.vacate_wanted()
        idle.write_text("oops")
        seen = desktop.observe(config, None)
        assert seen.present and "not a number" in seen.problem  # unreadable: present
    finally:
        desktop.enable(False)
    assert not desktop.pause_wanted()


# --- not charged while suspended ---------------------------------------------------------


def test_suspended_time_is_not_charged():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    started = now - timedelta(seconds=100)
    # 30 s suspended earlier, and suspended again for the last 20 s: 50 s charged.
    since = charged_start(started, 30.0, now - timedelta(seconds=20), now)
    assert running_charge([(2, since)], now) == 2 * 50.0
    assert charged_start(started, 0.0, None, now) == started
    assert charged_start(None, 5.0, None, now) is None


# --- the scheduler -----------------------------------------------------------------------


def _node(name: str, lends: bool = True, free: int = 4) -> FreeNode:
    return FreeNode(name, 4, 4096, free, 4096, lends=lends)


def test_no_new_job_on_a_desktop_whose_owner_is_present():
    jobs = {1: [QueuedJob(10, 1), QueuedJob(11, 1)]}
    assert pick_assignments(jobs, [_node("desk", lends=False)], {}).assignments == []
    placed = pick_assignments(jobs, [_node("desk", lends=False), _node("server", free=1)], {}).assignments
    assert [(a.job_id, a.node) for a in placed] == [(10, "server")]
    placed = pick_assignments(jobs, [_node("desk")], {}).assignments  # the owner left: it lends
    assert [(a.job_id, a.node) for a in placed] == [(10, "desk"), (11, "desk")]


def _view(name: str, present: bool, free: int = 4) -> NodeView:
    return NodeView(name, True, True, 4, 4096, 0, free, 4096, 0, owner_present=present, idle_minutes=15)


def test_the_reason_names_the_desktop_in_use():
    request = Request("queued", 1, 256, 0, node="desk-1")
    why = explain_wait(request, WaitFacts(nodes=(_view("desk-1", True),)))
    assert why == (
        "pinned to desk-1, a desktop whose owner is using it; it takes jobs once its owner has been idle 15 minutes"
    )
    anywhere = Request("queued", 1, 256, 0)
    why = explain_wait(anywhere, WaitFacts(nodes=(_view("desk-1", True), _view("server", False, free=0))))
    assert why.startswith("the node with room, desk-1, is a desktop whose owner is using it")
    assert explain_wait(anywhere, WaitFacts(nodes=(_view("desk-1", False),))) == "starting: a node has room"
