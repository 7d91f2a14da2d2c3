# A node's labels (DCT_NODE_LABELS): issue 19, Resources.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("nodes", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="node",
            name="labels",
            field=models.JSONField(
                blank=True, default=list, help_text="DCT_NODE_LABELS of the node: what jobs ask with labels =."
            ),
        ),
        migrations.AlterField(
            model_name="node",
            name="gpus",
            field=models.JSONField(blank=True, default=list, help_text="[{index, name, memory_mb, uuid, capability}]"),
        ),
    ]
