from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("voxanne", "0002_row_level_security"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="email_verified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
