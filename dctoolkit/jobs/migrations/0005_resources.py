# A job's machine choice (labels, nodes, avoid, GPU kind): issue 19, Resources.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_retries_and_attempts"),
    ]

    operations = [
        migrations.AddField(
            model_name="job",
            name="placement",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="Machine choice beyond sizes: {labels, nodes, avoid, gpu_type, gpu_memory_mb, gpu_capability}.",
            ),
        ),
    ]
