# The user-history index holds the columns serving reads (PostgreSQL: index-only scans).
# Created before the old one is dropped, so the history query never runs without an index.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("datasets", "0003_interaction_attribution_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="interaction",
            index=models.Index(
                fields=["project", "user", "timestamp"],
                include=("item", "event_type", "event_value"),
                name="interaction_user_history",
            ),
        ),
        migrations.RemoveIndex(
            model_name="interaction",
            name="interaction_user_time",
        ),
    ]
