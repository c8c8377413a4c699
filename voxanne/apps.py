from django.apps import AppConfig


class VoxanneConfig(AppConfig):
    name = "voxanne"
    verbose_name = "Accounts and clinics"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from voxanne import checks, schema  # noqa: F401  (register system checks, OpenAPI auth)
