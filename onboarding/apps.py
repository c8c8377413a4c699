from django.apps import AppConfig


class OnboardingConfig(AppConfig):
    name = "onboarding"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Billing knows nothing of onboarding: a paid top-up is announced, and heard here.
        from billing.signals import topup_paid
        from onboarding.services import on_topup_paid

        topup_paid.connect(on_topup_paid, dispatch_uid="onboarding.payment_success")
        from onboarding import rental

        topup_paid.connect(rental.on_topup_paid, dispatch_uid="onboarding.rental_renewal")
