"""The public one-click unsubscribe endpoint (RFC 8058): signed links, no login."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.core import signing
from django.utils import timezone

from abandonment.emails import unsubscribe_token
from abandonment.models import AbandonmentEmail, OptOut
from abandonment.services import run_abandonment
from tests.factories import make_abandoned_org, owner_of

pytestmark = pytest.mark.django_db


def link_path(email) -> str:
    url = email.extra_headers["List-Unsubscribe"].strip("<>")
    return url[url.index("/api/") :]


def test_one_click_post_from_the_emails_header_records_the_opt_out_and_stops_the_emails(
    api, mailoutbox
):
    org = make_abandoned_org(hours_ago=2)
    run_abandonment()
    path = link_path(mailoutbox[0])

    response = api.post(
        path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200
    assert response.json() == {"email": owner_of(org).email, "unsubscribed": True}
    assert OptOut.objects.filter(org=org).count() == 1
    # Idempotent: a second click changes nothing.
    assert api.post(path).status_code == 200
    assert OptOut.objects.filter(org=org).count() == 1

    summary = run_abandonment(now=None)
    assert summary.candidates == 0
    assert run_abandonment(now=timezone.now() + timedelta(hours=60)).sent["3"] == 0
    assert list(AbandonmentEmail.objects.values_list("sequence", flat=True)) == [1]


def test_get_only_shows_a_confirmation_page_and_unsubscribes_nobody(api):
    org = make_abandoned_org()
    token = unsubscribe_token(org_id=org.id)
    response = api.get(f"/api/abandonment/unsubscribe/{token}", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert owner_of(org).email in page and '<form method="post"' in page
    assert not OptOut.objects.exists()

    posted = api.post(f"/api/abandonment/unsubscribe/{token}", HTTP_ACCEPT="text/html")
    assert posted.status_code == 200 and "You are unsubscribed" in posted.content.decode()
    assert OptOut.objects.filter(org=org).exists()


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "WyJ4Il0:1xW0ko:forgedsignatureforgedsignatureforgedsig",
        "%20OR%201=1",
    ],
)
def test_a_bad_token_is_a_400_with_an_error_sentence(api, method, token):
    response = getattr(api, method)(f"/api/abandonment/unsubscribe/{token}")
    assert response.status_code == 400
    assert response.json()["error"] == "This unsubscribe link is invalid or has expired."
    assert not OptOut.objects.exists()


def test_an_expired_or_other_purpose_token_is_refused(api, settings):
    org = make_abandoned_org()
    email = owner_of(org).email
    settings.ABANDONMENT_UNSUBSCRIBE_MAX_AGE_DAYS = 30
    with mock.patch("time.time", return_value=time.time() - 31 * 86400):
        old = unsubscribe_token(org_id=org.id)
    other_salt = signing.dumps([str(org.id), email], salt="something-else")
    for token in (old, other_salt):
        response = api.post(f"/api/abandonment/unsubscribe/{token}")
        assert response.status_code == 400
        assert "error" in response.json()
    assert not OptOut.objects.exists()
    fresh = unsubscribe_token(org_id=org.id)
    assert api.post(f"/api/abandonment/unsubscribe/{fresh}").status_code == 200


def decodings(token: str) -> list[bytes]:
    """Every piece of the token read as base64 (what anyone holding the link can do)."""
    pieces = []
    for part in token.replace(".", ":").split(":"):
        try:
            pieces.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        except (binascii.Error, ValueError):
            pass
    return pieces


def test_the_link_does_not_carry_the_address_in_a_readable_form(mailoutbox):
    org = make_abandoned_org(hours_ago=2)
    email = owner_of(org).email
    run_abandonment()
    path = link_path(mailoutbox[0])
    token = path.rsplit("/", 1)[1]
    assert email not in path and email.split("@")[0] not in path
    for piece in decodings(token):
        assert email.encode() not in piece and email.split("@")[0].encode() not in piece


def test_a_link_from_before_the_opaque_format_still_unsubscribes(api):
    org = make_abandoned_org()
    legacy = signing.dumps([str(org.id), owner_of(org).email], salt="abandonment.unsubscribe")
    response = api.post(f"/api/abandonment/unsubscribe/{legacy}")
    assert response.status_code == 200
    assert OptOut.objects.filter(org=org).exists()


@pytest.mark.parametrize("method", ["get", "post"])
def test_the_access_log_never_holds_the_link(api, caplog, method):
    org = make_abandoned_org()
    token = unsubscribe_token(org_id=org.id)
    with caplog.at_level(logging.INFO):
        response = getattr(api, method)(f"/api/abandonment/unsubscribe/{token}")
    assert response.status_code == 200
    access = [r for r in caplog.records if r.name == "voxanne.access"]
    assert access, caplog.records
    for record in caplog.records:
        assert token not in record.getMessage()
        assert token not in str(vars(record))
    assert "/api/abandonment/unsubscribe/[redacted]" in access[0].getMessage()


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    "payload",
    [[123, "a@clinic.test"], [None, "a@clinic.test"], [["x"], "a@clinic.test"], {"a": 1, "b": 2}],
    ids=["int-org", "null-org", "list-org", "dict"],
)
def test_a_signed_payload_of_the_wrong_shape_is_a_400(api, method, payload):
    from abandonment.emails import UNSUBSCRIBE_SALT

    token = signing.dumps(payload, salt=UNSUBSCRIBE_SALT)
    response = getattr(api, method)(f"/api/abandonment/unsubscribe/{token}")
    assert response.status_code == 400
    assert response.json()["error"] == "This unsubscribe link is invalid or has expired."
