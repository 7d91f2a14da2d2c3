"""Email when jobs end, against a real SMTP server (aiosmtpd) on loopback, sent by the real scheduler."""

import pytest

from tests.support.cluster import Cluster, wait_until
from tests.support.mail import body_of

pytestmark = pytest.mark.integration

BASE_URL = "http://portal.lab.example:8000"


@pytest.fixture(scope="module")
def mail_cluster(tmp_path_factory, smtp):
    extra = {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp.port), "DCT_BASE_URL": BASE_URL}
    with Cluster(tmp_path_factory.mktemp("mail"), extra_env=extra) as c:
        c.start_nodes({"node-1": 2, "node-2": 1})
        yield c


def test_a_failed_job_mails_its_owner_once_with_state_times_stderr_and_link(mail_cluster, smtp, tmp_path):
    # About 30 MB held for a second, so the node samples a peak.
    script = "#!/bin/sh\nx=$(head -c 30000000 /dev/zero | tr '\\0' a)\nsleep 1\necho 'something broke' >&2\nexit 4\n"
    text = "executable = bad.sh\nemail = one@lab.example\nrequest_cpus = 2\nrequest_memory = 4GB\n"
    (job,) = mail_cluster.submit(tmp_path, text, {"bad.sh": script})
    (message,) = wait_until(lambda: smtp.inbox.to("one@lab.example"), 60, "the job's mail")
    assert message["Subject"] == f"[dctoolkit] job {job['id']} (bad) failed"
    text = body_of(message)
    assert text.startswith(f"Job {job['id']} (bad) ended: failed.\n")
    assert "Exit status: 4\n" in text and "Node:        node-" in text
    assert "Wall time:   " in text and "CPU time:    " in text
    assert "Resources: asked for 2 cpus and 4.0 GB, used " in text
    assert "request_memory = 256MB" in text, "a 4 GB request for a tiny job gets a smaller suggestion"
    assert "Last lines of stderr:\n  something broke\n" in text
    assert f"Details: {BASE_URL}/jobs/{job['id']}/" in text
    assert mail_cluster.wait_job(job["id"])["state"] == "failed"


def test_mail_waits_for_the_smtp_server_and_goes_once_it_is_up(mail_cluster, smtp, tmp_path):
    smtp.stop()
    try:
        (job,) = mail_cluster.submit(
            tmp_path, "executable = ok.sh\nemail = later@lab.example\n", {"ok.sh": "#!/bin/sh\necho fine\n"}
        )
        assert mail_cluster.wait_job(job["id"])["state"] == "succeeded", "the job does not fail for want of mail"
        log = mail_cluster.logs / "scheduler-0.log"
        wait_until(lambda: "mail not sent yet" in log.read_text(), 60, "the scheduler to try while SMTP is down")
        assert smtp.inbox.to("later@lab.example") == []
    finally:
        smtp.start()
    (message,) = wait_until(lambda: smtp.inbox.to("later@lab.example"), 180, "the mail once SMTP is back")
    assert message["Subject"] == f"[dctoolkit] job {job['id']} (ok) succeeded"


def test_a_batch_sends_one_digest_when_its_last_job_ends(mail_cluster, smtp, tmp_path):
    script = '#!/bin/sh\nif [ "$1" = 1 ]; then echo no >&2; exit 2; fi\necho "part $1"\n'
    text = "executable = part.sh\narguments = $(Process)\nemail = batch@lab.example\nqueue = 3\n"
    jobs = mail_cluster.submit(tmp_path, text, {"part.sh": script})
    ids = [j["id"] for j in jobs]
    (digest,) = wait_until(lambda: smtp.inbox.to("batch@lab.example"), 90, "the batch digest")
    # The digest waits for the last job, so by now every job has ended.
    assert [mail_cluster.job(i)["state"] for i in ids] == ["succeeded", "failed", "succeeded"]
    assert digest["Subject"] == "[dctoolkit] batch of 3 jobs (job.txt) ended: 2 succeeded, 1 failed"
    text = body_of(digest)
    assert f"All 3 jobs of job.txt (jobs {ids[0]}-{ids[-1]}) have ended: 2 succeeded, 1 failed." in text
    assert f"Failed:\n  job {ids[1]} (part): exit status 2, exit status 2  {BASE_URL}/jobs/{ids[1]}/\n" in text
    # A marker job mailed after the digest proves the scheduler went on sending: still one mail for the batch.
    mail_cluster.submit(tmp_path / "m", "executable = m.sh\nemail = marker@lab.example\n", {"m.sh": "#!/bin/sh\n"})
    wait_until(lambda: smtp.inbox.to("marker@lab.example"), 60, "the marker's mail")
    assert len(smtp.inbox.to("batch@lab.example")) == 1


def test_a_refused_address_is_given_up_without_holding_back_other_mail(mail_cluster, smtp, tmp_path):
    ok = {"ok.sh": "#!/bin/sh\necho fine\n"}
    (refused,) = mail_cluster.submit(tmp_path / "a", "executable = ok.sh\nemail = nobody@lab.example\n", ok)
    mail_cluster.wait_job(refused["id"])
    (job,) = mail_cluster.submit(tmp_path / "b", "executable = ok.sh\nemail = after@lab.example\n", ok)
    (message,) = wait_until(lambda: smtp.inbox.to("after@lab.example"), 60, "the next job's mail")
    assert message["Subject"] == f"[dctoolkit] job {job['id']} (ok) succeeded"
    log = (mail_cluster.logs / "scheduler-0.log").read_text()
    assert "mail to nobody@lab.example given up: the SMTP server refuses that address" in log
