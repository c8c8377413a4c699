from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("voxanne", "0003_agent_call_move_to_voice"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_verified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
