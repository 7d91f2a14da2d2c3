"""Partial job indexes: a job with no retry time, start time, periodic policy, DAG or accounting group (most
jobs) is in none of their indexes, and the owner's own index goes (bench/README.md, "Index entries a job writes").

A job's claim, start and end each change its `state`.  SQLite rewrites the
job's entry in every index holding `state` or `node`; PostgreSQL, for which
no update of an indexed column is HOT, writes a new entry in every index
that holds the row, NULLs included.  So on both the (state, retry_at),
(state, start_after) and (periodic_policy, state) indexes become partial
(their queries name the column: `retry_at <= now` holds only where it is
not NULL), the foreign key indexes of dag, dag_node and accounting_group
become partial, and the owner's (owner_id) index goes: job_owner_newest
(owner_id, -id) serves each lookup by owner.  MySQL and MariaDB have no
partial indexes (Django would make full ones) and InnoDB keeps an index for
each foreign key itself: there nothing changes in the database.  The old
indexes are dropped and the new made here, not by AlterField, which on
SQLite would copy the whole table.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

OLD = [
    models.Index(fields=["state", "retry_at"], name="job_state_retry_at"),
    models.Index(fields=["state", "start_after"], name="job_state_start_after"),
    models.Index(fields=["periodic_policy", "state"], name="job_periodic_policy"),
]
NEW = [
    models.Index(condition=models.Q(("retry_at__isnull", False)), fields=["state", "retry_at"], name="job_retry_at"),
    models.Index(
        condition=models.Q(("start_after__isnull", False)), fields=["state", "start_after"], name="job_start_after"
    ),
    models.Index(condition=models.Q(("periodic_policy", True)), fields=["state"], name="job_has_periodic_policy"),
    models.Index(condition=models.Q(("dag__isnull", False)), fields=["dag"], name="job_dag"),
    models.Index(condition=models.Q(("dag_node__isnull", False)), fields=["dag_node"], name="job_dag_node"),
    models.Index(
        condition=models.Q(("accounting_group__isnull", False)),
        fields=["accounting_group"],
        name="job_accounting_group",
    ),
]
# The foreign keys whose own single-column index (Django's, named by a hash) goes.
UNINDEXED = ["owner_id", "dag_id", "dag_node_id", "accounting_group_id"]


def own_indexes(schema_editor, table: str) -> list[str]:
    """The names of the plain single-column indexes on the UNINDEXED columns."""
    with schema_editor.connection.cursor() as cursor:
        found = schema_editor.connection.introspection.get_constraints(cursor, table)
    return [
        name
        for name, info in found.items()
        if info["index"] and not (info["primary_key"] or info["unique"]) and info["columns"] in [[c] for c in UNINDEXED]
    ]


def forwards(apps, schema_editor):
    if not schema_editor.connection.features.supports_partial_indexes:
        return
    job = apps.get_model("jobs", "Job")
    for name in own_indexes(schema_editor, job._meta.db_table):
        schema_editor.execute(schema_editor._delete_index_sql(job, name))
    for index in OLD:
        schema_editor.remove_index(job, index)
    for index in NEW:
        schema_editor.add_index(job, index)


def backwards(apps, schema_editor):
    if not schema_editor.connection.features.supports_partial_indexes:
        return
    job = apps.get_model("jobs", "Job")
    for index in NEW:
        schema_editor.remove_index(job, index)
    for index in OLD:
        schema_editor.add_index(job, index)
    for column in UNINDEXED:
        schema_editor.execute(
            schema_editor._create_index_sql(job, fields=[job._meta.get_field(column.removesuffix("_id"))])
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_group_total_caps"),
        ("jobs", "0020_owes_mail_indexes"),
        ("nodes", "0005_enforcement"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(
                    model_name="job",
                    name="job_state_retry_at",
                ),
                migrations.RemoveIndex(
                    model_name="job",
                    name="job_state_start_after",
                ),
                migrations.RemoveIndex(
                    model_name="job",
                    name="job_periodic_policy",
                ),
                migrations.AlterField(
                    model_name="job",
                    name="accounting_group",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        help_text=(
                            "The group it charges: accounting_group = NAME, else its owner's first group "
                            "(none: no group)."
                        ),
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="jobs",
                        to="accounts.group",
                    ),
                ),
                migrations.AlterField(
                    model_name="job",
                    name="dag",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="jobs",
                        to="jobs.dag",
                    ),
                ),
                migrations.AlterField(
                    model_name="job",
                    name="dag_node",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="jobs",
                        to="jobs.dagnode",
                    ),
                ),
                migrations.AlterField(
                    model_name="job",
                    name="owner",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="jobs",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("retry_at__isnull", False)),
                        fields=["state", "retry_at"],
                        name="job_retry_at",
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("start_after__isnull", False)),
                        fields=["state", "start_after"],
                        name="job_start_after",
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("periodic_policy", True)), fields=["state"], name="job_has_periodic_policy"
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(condition=models.Q(("dag__isnull", False)), fields=["dag"], name="job_dag"),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("dag_node__isnull", False)), fields=["dag_node"], name="job_dag_node"
                    ),
                ),
                migrations.AddIndex(
                    model_name="job",
                    index=models.Index(
                        condition=models.Q(("accounting_group__isnull", False)),
                        fields=["accounting_group"],
                        name="job_accounting_group",
                    ),
                ),
            ],
            # Not atomic: MySQL and MariaDB cannot roll DDL back (nothing is done there, as it happens).
            database_operations=[migrations.RunPython(forwards, backwards, atomic=False)],
        ),
    ]
