"""Fewer index entries for a scheduling pass's claim to rewrite (bench/README.md, "Scale").

A claim changes each placed job's `state` and `node`: every index holding
those columns gets the job's entry moved, and in the indexes that lead with
the owner or the submission that is a random page per user (a million
queued: a few thousand pages a pass).  (state, owner, id) goes: the
(state, owner, -priority, id) index serves every query it served.  The
throttle index becomes partial, throttled jobs only, on SQLite and
PostgreSQL; MySQL and MariaDB have no partial indexes (Django makes none
there), so on them the full (max_running, state, submission) index stays.
"""

from django.conf import settings
from django.db import migrations, models

OLD_THROTTLED = models.Index(fields=["max_running", "state", "submission"], name="job_throttled")
NEW_THROTTLED = models.Index(
    condition=models.Q(("max_running__isnull", False)), fields=["submission", "state"], name="job_throttled_submission"
)


def throttle_index_forwards(apps, schema_editor):
    if schema_editor.connection.features.supports_partial_indexes:
        job = apps.get_model("jobs", "Job")
        schema_editor.remove_index(job, OLD_THROTTLED)
        schema_editor.add_index(job, NEW_THROTTLED)


def throttle_index_backwards(apps, schema_editor):
    if schema_editor.connection.features.supports_partial_indexes:
        job = apps.get_model("jobs", "Job")
        schema_editor.remove_index(job, NEW_THROTTLED)
        schema_editor.add_index(job, OLD_THROTTLED)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_group_total_caps"),
        ("jobs", "0018_job_num_holds"),
        ("nodes", "0005_enforcement"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(model_name="job", name="job_state_owner_id"),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="job", name="job_throttled"),
                migrations.AddIndex(model_name="job", index=NEW_THROTTLED),
            ],
            database_operations=[migrations.RunPython(throttle_index_forwards, throttle_index_backwards)],
        ),
    ]
