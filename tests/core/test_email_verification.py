"""Sign-up sends a signed, expiring link that verifies the owner's address (GET shows a page,
POST verifies); the wizard can ask for it again."""

from __future__ import annotations

import logging
import time
from unittest import mock

import pytest

from tests.factories import PASSWORD, auth_header, make_org, owner_of, unique_email
from voxanne.models import User
from voxanne.services import email_verification_token

pytestmark = pytest.mark.django_db

INVALID = "This verification link is invalid or has expired."


def sign_up(api, email: str):
    response = api.post("/api/auth/signup", {"email": email, "password": PASSWORD}, format="json")
    assert response.status_code == 201, response.content
    return response


def link_in(message) -> str:
    [line] = [w for w in message.body.split() if "/api/auth/verify-email/" in w]
    return line


def path_of(link: str) -> str:
    return link[link.index("/api/") :]


def test_signup_emails_the_owner_a_verification_link(api, mailoutbox, settings):
    settings.APP_BASE_URL = "https://app.voxanne.test"
    email = unique_email("owner")
    sign_up(api, email)
    [message] = mailoutbox
    assert message.to == [email]
    link = link_in(message)
    assert link.startswith("https://app.voxanne.test/api/auth/verify-email/")
    assert email not in link and email.split("@")[0] not in link
    assert any(link in str(content) for content, _ in message.alternatives)  # HTML part too
    assert User.objects.get(email=email).email_verified_at is None


def test_get_shows_a_page_with_a_button_and_post_verifies(api, mailoutbox):
    email = unique_email("owner")
    sign_up(api, email)
    path = path_of(link_in(mailoutbox[0]))

    page = api.get(path, HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert '<form method="post"' in page.content.decode() and email in page.content.decode()
    assert api.get(path).json() == {"email": email, "verified": False}
    assert User.objects.get(email=email).email_verified_at is None  # a prefetch verifies nobody

    posted = api.post(path)
    assert posted.status_code == 200
    assert posted.json() == {"email": email, "verified": True}
    verified_at = User.objects.get(email=email).email_verified_at
    assert verified_at is not None
    assert api.post(path).status_code == 200  # a second click changes nothing
    assert User.objects.get(email=email).email_verified_at == verified_at
    html = api.post(path, HTTP_ACCEPT="text/html")
    assert "verified" in html.content.decode().lower()


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("token", ["nope", "abc:1xW0ko:forgedforgedforgedforgedforgedfo", "%00"])
def test_a_bad_link_is_a_400_with_a_sentence(api, method, token):
    response = getattr(api, method)(f"/api/auth/verify-email/{token}")
    assert response.status_code == 400
    assert response.json()["error"] == INVALID


def test_an_expired_link_or_another_links_signature_does_not_verify(api):
    from abandonment.emails import unsubscribe_token

    org = make_org()
    owner = owner_of(org)
    with mock.patch("time.time", return_value=time.time() - 8 * 86400):
        old = email_verification_token(owner)
    unsubscribe = unsubscribe_token(org_id=org.id)  # signed by us, for another purpose
    for token in (old, unsubscribe):
        assert api.post(f"/api/auth/verify-email/{token}").status_code == 400
    assert User.objects.get(pk=owner.pk).email_verified_at is None
    assert api.post(f"/api/auth/verify-email/{email_verification_token(owner)}").status_code == 200


def test_resend_needs_a_token_and_sends_the_link_again(api, mailoutbox):
    org = make_org()
    assert api.post("/api/auth/verify-email/resend").status_code == 401
    response = api.post("/api/auth/verify-email/resend", **auth_header(org))
    assert response.status_code == 200
    assert response.json() == {"sent": True, "verified": False}
    [message] = mailoutbox
    assert message.to == [owner_of(org).email]
    assert api.post(path_of(link_in(message))).json()["verified"] is True

    again = api.post("/api/auth/verify-email/resend", **auth_header(org))
    assert again.json() == {"sent": False, "verified": True}
    assert len(mailoutbox) == 1


def test_resend_is_throttled_per_user(api, mailoutbox):
    org, other = make_org(), make_org()
    statuses = [
        api.post("/api/auth/verify-email/resend", **auth_header(org)).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    assert len(mailoutbox) == 3
    assert api.post("/api/auth/verify-email/resend", **auth_header(other)).status_code == 200


def test_the_logs_never_hold_the_verification_link(api, caplog):
    owner = owner_of(make_org())
    token = email_verification_token(owner)
    with caplog.at_level(logging.INFO):
        assert api.get(f"/api/auth/verify-email/{token}").status_code == 200
        assert api.post(f"/api/auth/verify-email/{token}").status_code == 200
    assert [r for r in caplog.records if r.name == "voxanne.access"]
    for record in caplog.records:
        assert token not in record.getMessage() and token not in str(vars(record))
