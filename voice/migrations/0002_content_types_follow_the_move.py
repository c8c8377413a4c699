"""Admin history and permissions granted on agents and calls follow them to this app: their
content types are relabelled, not recreated."""

from django.db import migrations

MODELS = ["agent", "call"]


def relabel(apps, schema_editor, *, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    for model in MODELS:
        if not ContentType.objects.filter(app_label=new, model=model).exists():
            ContentType.objects.filter(app_label=old, model=model).update(app_label=new)


def forwards(apps, schema_editor):
    relabel(apps, schema_editor, old="voxanne", new="voice")


def backwards(apps, schema_editor):
    relabel(apps, schema_editor, old="voice", new="voxanne")


class Migration(migrations.Migration):
    dependencies = [
        ("voice", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
