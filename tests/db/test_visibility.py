"""The two forms of "which jobs a user may see" agree: the queryset's and the plain row's."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

from dctoolkit.jobs.models import Job, Submission
from dctoolkit.jobs.visibility import may_see


def _job(owner) -> Job:
    sub = Submission.objects.create(owner=owner, source_name="job.txt", text="", job_count=1)
    return Job.objects.create(submission=sub, owner=owner, name="t", executable="t.sh", submitted_at=timezone.now())


def test_visible_to_and_may_see_are_one_rule(db):
    users = get_user_model().objects
    alice, bob = users.create_user("alice"), users.create_user("bob")
    staff = users.create_user("op", is_staff=True)
    jobs = [_job(alice), _job(alice), _job(bob), _job(staff)]
    for viewer in (alice, bob, staff):
        seen = set(Job.objects.visible_to(viewer).values_list("id", flat=True))
        assert seen == {j.id for j in jobs if may_see(viewer, j.owner_id)}, viewer.username
    assert set(Job.objects.visible_to(alice).values_list("id", flat=True)) == {jobs[0].id, jobs[1].id}
    assert Job.objects.visible_to(staff).count() == 4
    assert not Job.objects.visible_to(AnonymousUser()).exists()
