"""The mail step's lookup of what may owe a mail, one index probe a round (bench/README.md, "Chores").

Partial indexes on SQLite and PostgreSQL: a job or DAG without an address, or
whose mail went, is not in them, so neither thousands of ended jobs nor a
pass's claim (which rewrites the `state` of queued jobs, none of which is
in it unless it has an address) touches them.  MySQL and MariaDB have no
partial indexes (Django would make full (state) ones): there full (notified,
email) indexes take their place, with no `state` in them for a claim to rewrite.
"""

from django.conf import settings
from django.db import migrations, models

OWES_MAIL = models.Q(("notified", False), models.Q(("email", ""), _negated=True))
JOB_INDEX = models.Index(condition=OWES_MAIL, fields=["state"], name="job_owes_mail")
DAG_INDEX = models.Index(condition=OWES_MAIL, fields=["state"], name="dag_owes_mail")
# MySQL and MariaDB: Django would make the partial indexes full (state) ones, which a claim rewrites.
FULL_JOB_INDEX = models.Index(fields=["notified", "email"], name="job_owes_mail")
FULL_DAG_INDEX = models.Index(fields=["notified", "email"], name="dag_owes_mail")


def indexes(apps, schema_editor):
    job, dag = apps.get_model("jobs", "Job"), apps.get_model("jobs", "Dag")
    if schema_editor.connection.features.supports_partial_indexes:
        return [(job, JOB_INDEX), (dag, DAG_INDEX)]
    return [(job, FULL_JOB_INDEX), (dag, FULL_DAG_INDEX)]


def forwards(apps, schema_editor):
    for model, index in indexes(apps, schema_editor):
        schema_editor.add_index(model, index)


def backwards(apps, schema_editor):
    for model, index in indexes(apps, schema_editor):
        schema_editor.remove_index(model, index)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_group_total_caps"),
        ("jobs", "0019_scheduler_claim_indexes"),
        ("nodes", "0005_enforcement"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(model_name="dag", index=DAG_INDEX),
                migrations.AddIndex(model_name="job", index=JOB_INDEX),
            ],
            # Not atomic: MySQL and MariaDB cannot roll DDL back, and refuse it inside a transaction.
            database_operations=[migrations.RunPython(forwards, backwards, atomic=False)],
        ),
    ]
