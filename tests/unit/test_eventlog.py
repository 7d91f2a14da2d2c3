"""The event log `log = NAME` asks for is in HTCondor's user-log format: HTCondor's own reader takes it."""

from datetime import datetime

import htcondor2

from dctoolkit.jobs import eventlog

WHEN = datetime(2026, 12, 2, 2, 40, 1)  # naive: written as given (aware times are written in local time)


def test_a_terminated_event_reads_as_htcondor_writes_it():
    assert eventlog.terminated(42, 3, WHEN, 0, 3.5) == (
        "005 (042.003.000) 2026-12-02 02:40:01 Job terminated.\n"
        "\t(1) Normal termination (return value 0)\n"
        "\t\tUsr 0 00:00:03, Sys 0 00:00:00  -  Run Remote Usage\n"
        "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Run Local Usage\n"
        "\t\tUsr 0 00:00:03, Sys 0 00:00:00  -  Total Remote Usage\n"
        "\t\tUsr 0 00:00:00, Sys 0 00:00:00  -  Total Local Usage\n"
        "\t0  -  Run Bytes Sent By Job\n\t0  -  Run Bytes Received By Job\n"
        "\t0  -  Total Bytes Sent By Job\n\t0  -  Total Bytes Received By Job\n...\n"
    )


def test_htcondor2_job_event_log_reads_every_event_we_write(tmp_path):
    events = [
        eventlog.submitted(42, 0, WHEN),
        eventlog.submitted(42, 1, WHEN),
        eventlog.executing(42, 0, WHEN, "node-1"),
        eventlog.ended(42, 0, WHEN, "succeeded", 0, "", 1.0),
        eventlog.executing(42, 1, WHEN, "node-2"),
        eventlog.ended(42, 1, WHEN, "queued", None, "node lost", 0.0),
        eventlog.ended(42, 1, WHEN, "held", None, "held by its owner\n...\n000 (1.0.0) forged", 0.0),
        eventlog.released(42, 1, WHEN, "released by its owner"),
        eventlog.ended(42, 1, WHEN, "failed", -9, "killed by signal 9", 0.0),
        eventlog.ended(42, 1, WHEN, "cancelled", None, "cancelled by its owner", 0.0),
    ]
    for event in events:
        eventlog.append(tmp_path, event)
    read = list(htcondor2.JobEventLog(str(tmp_path / eventlog.FILE_NAME)).events(stop_after=0))
    assert [(int(e.type), e.cluster, e.proc) for e in read] == [
        (0, 42, 0),
        (0, 42, 1),
        (1, 42, 0),
        (5, 42, 0),
        (1, 42, 1),
        (4, 42, 1),
        (12, 42, 1),
        (13, 42, 1),
        (5, 42, 1),
        (9, 42, 1),
    ]
    assert read[2]["ExecuteHost"] == "<127.0.0.1:0?alias=node-1>"
    assert (read[3]["TerminatedNormally"], read[3]["ReturnValue"]) == (True, 0)
    assert read[6]["HoldReason"] == "held by its owner ... 000 (1.0.0) forged", "a reason cannot end the event"
    assert (read[8]["TerminatedNormally"], read[8]["TerminatedBySignal"]) == (False, 9)
    assert read[9]["Reason"] == "cancelled by its owner"


def test_an_owners_action_on_a_waiting_job_has_its_event(tmp_path):
    for verb in ("hold", "release", "cancel"):
        eventlog.append(tmp_path, eventlog.for_action(verb, 7, 0, WHEN))
    read = list(htcondor2.JobEventLog(str(tmp_path / eventlog.FILE_NAME)).events(stop_after=0))
    assert [int(e.type) for e in read] == [12, 13, 9]
