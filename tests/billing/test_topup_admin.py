"""Support sees top-ups, disputes and the webhook inbox, and which wallets are frozen."""

from __future__ import annotations

import pytest

from tests.billing.test_stripe_webhook import paid_topup
from tests.factories import make_support_user

pytestmark = pytest.mark.django_db


def test_support_sees_topups_disputes_inbox_and_frozen_wallets(api, client, stripe_double):
    topup = paid_topup(api, stripe_double, 5000)
    stripe_double.open_dispute(next(iter(stripe_double.charges)))
    client.force_login(make_support_user(superuser=True))
    pages = {
        "/admin/billing/topup/": topup.stripe_session_id,
        f"/admin/billing/topup/{topup.pk}/change/": topup.payment_intent_id,
        "/admin/billing/dispute/": "dp_test_",
        "/admin/billing/webhookevent/": "charge.dispute.created",
        "/admin/billing/wallet/?frozen_at__isnull=False": str(topup.org),
    }
    for url, expected in pages.items():
        response = client.get(url)
        assert response.status_code == 200, url
        assert expected in response.content.decode(), url
    assert client.get("/admin/billing/topup/add/").status_code == 403
