"""The mail step's lookup of what may owe a mail, one index probe a round (bench/README.md, "Chores").

Partial indexes on SQLite and PostgreSQL: a job or DAG without an address, or
whose mail went, is not in them, so neither thousands of ended jobs nor a
pass's claim (which rewrites the `state` of queued jobs, none of which is
in it unless it has an address) touches them.  MySQL and MariaDB have no
partial indexes (Django makes none there): there a full (notified, email)
index takes the job's, with no `state` in it for a claim to rewrite.
"""

from django.conf import settings
from django.db import migrations, models

OWES_MAIL = models.Q(("notified", False), models.Q(("email", ""), _negated=True))
FULL_JOB_INDEX = models.Index(fields=["notified", "email"], name="job_owes_mail")


def full_index_forwards(apps, schema_editor):
    if not schema_editor.connection.features.supports_partial_indexes:
        schema_editor.add_index(apps.get_model("jobs", "Job"), FULL_JOB_INDEX)


def full_index_backwards(apps, schema_editor):
    if not schema_editor.connection.features.supports_partial_indexes:
        schema_editor.remove_index(apps.get_model("jobs", "Job"), FULL_JOB_INDEX)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_group_total_caps"),
        ("jobs", "0019_scheduler_claim_indexes"),
        ("nodes", "0005_enforcement"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="dag",
            index=models.Index(condition=OWES_MAIL, fields=["state"], name="dag_owes_mail"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(condition=OWES_MAIL, fields=["state"], name="job_owes_mail"),
        ),
        migrations.RunPython(full_index_forwards, full_index_backwards),
    ]
