from django.apps import AppConfig


def open_wallet(sender, organization, **kwargs) -> None:
    """Every new clinic starts with an empty wallet, in its signup transaction."""
    from billing.services import wallet_for

    wallet_for(organization)


class BillingConfig(AppConfig):
    name = "billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from voxanne.signals import organization_created

        organization_created.connect(open_wallet, dispatch_uid="billing.open_wallet")
