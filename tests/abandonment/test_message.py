"""What a clinic's mail program receives: subject, sender, both parts, one-click unsubscribe."""

from __future__ import annotations

import uuid
from email import message_from_bytes
from email.policy import default

import pytest
from django.utils.html import escape

from abandonment.emails import clinic_label, compose, subject_for

CLINIC_NAMES = [
    "Zoë's Smile Studio",
    "Clínica Dental Núñez",
    "歯科クリニック",
    'Dr <b>& "Partners"',
    "O'Neil Smiles",
    "Ørthodontics " * 20,  # long enough to fold the subject
    None,
    "  ",
]


def received(message):
    """The message as the SMTP server gets it, parsed back by a mail program (a folded header
    keeps the space of its fold, hence the strip() below)."""
    return message_from_bytes(message.message().as_bytes(linesep="\r\n"), policy=default)


def parts(parsed) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in parsed.iter_parts()}


@pytest.mark.parametrize("sequence", [1, 2, 3])
@pytest.mark.parametrize("clinic_name", CLINIC_NAMES)
def test_every_email_reads_right_for_any_clinic_name(settings, sequence, clinic_name):
    settings.APP_BASE_URL = "https://app.voxanne.test"
    org_id = uuid.uuid4()
    parsed = received(
        compose(
            org_id=org_id, clinic_name=clinic_name, email="o'neil@clinic.test", sequence=sequence
        )
    )
    assert parsed["Subject"].strip() == subject_for(sequence, clinic_name)
    assert parsed["To"] == "o'neil@clinic.test"
    assert parsed["Message-ID"].strip() == f"<abandonment-{sequence}-{org_id}@app.voxanne.test>"
    assert parsed["Date"]
    assert parsed.get_content_type() == "multipart/alternative"
    body = parts(parsed)
    assert set(body) == {"text/plain", "text/html"}
    label = clinic_label(clinic_name)
    assert label in body["text/plain"]  # plain text is not HTML-escaped
    assert escape(label) in body["text/html"]
    assert "https://app.voxanne.test/onboarding" in body["text/plain"]
    assert "https://app.voxanne.test/onboarding" in body["text/html"]


def test_one_click_unsubscribe_headers_point_at_the_link_in_both_parts():
    parsed = received(
        compose(org_id=uuid.uuid4(), clinic_name="Bright", email="a@b.test", sequence=1)
    )
    link = parsed["List-Unsubscribe"].strip()
    assert link.startswith("<http://") and link.endswith(">")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    body = parts(parsed)
    assert link[1:-1] in body["text/plain"] and link[1:-1] in body["text/html"]


def test_a_clinic_without_a_name_is_your_clinic():
    assert clinic_label(None) == clinic_label("  \n ") == "your clinic"
    assert subject_for(2, None) == "How many calls did your clinic miss today?"


@pytest.mark.parametrize(
    "from_email", ["Voxanne <hello@voxanne.test>", "Zoë at Voxanne <zoe@voxanne.test>"]
)
def test_the_sender_reads_the_same_outside_ascii(settings, from_email):
    settings.DEFAULT_FROM_EMAIL = from_email
    parsed = received(
        compose(org_id=uuid.uuid4(), clinic_name="Núñez", email="a@b.test", sequence=2)
    )
    assert parsed["From"].strip() == from_email
