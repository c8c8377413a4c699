from django.apps import AppConfig


class AbandonmentConfig(AppConfig):
    name = "abandonment"
    default_auto_field = "django.db.models.BigAutoField"
