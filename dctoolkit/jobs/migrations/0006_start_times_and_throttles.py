# Start times and throttles: issue 17, item 4 (start_after, max_running).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0005_resources"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="start_after",
            field=models.DateTimeField(blank=True, help_text="The job waits until then.", null=True),
        ),
        migrations.AddField(
            model_name="job",
            name="max_running",
            field=models.PositiveIntegerField(
                blank=True, help_text="At most this many jobs of its submission dispatched or running.", null=True
            ),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["state", "start_after"], name="job_state_start_after"),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(fields=["max_running", "state", "submission"], name="job_throttled"),
        ),
    ]
