"""The sequence's emails build the same MIME as Django's own EmailMultiAlternatives.message()."""

from __future__ import annotations

import copy
import uuid

import pytest
from django.core.mail import EmailMultiAlternatives
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from abandonment.emails import AbandonmentMessage, Composer

# Clinic names as clinics type them: any printable text, accents, emoji, markup, long ones.
clinic_names = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=200),
    st.sampled_from(["Zoë's Smile Studio", "Clínica Dental Núñez", "歯科クリニック", "Dr <b>&"]),
)
addresses = st.one_of(
    st.emails(),
    st.sampled_from(["owner@clinic.test", "o'neil+front-desk@clinic.co.uk"]),
)


def wire(message) -> bytes:
    """The bytes the SMTP backend sends, with the two per-call values fixed."""
    message.set_boundary("BOUNDARY")
    del message["Date"]
    return message.as_bytes(linesep="\r\n")


def djangos(message: EmailMultiAlternatives):
    return EmailMultiAlternatives.message(message)


@pytest.fixture(scope="module")
def composer(django_db_blocker):
    with django_db_blocker.unblock():
        return Composer()


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clinic_name=clinic_names, email=addresses, sequence=st.sampled_from([1, 2, 3]))
def test_same_bytes_as_django_for_any_clinic_name_and_address(
    composer, clinic_name, email, sequence
):
    message = composer.compose(
        org_id=uuid.uuid4(), clinic_name=clinic_name, email=email, sequence=sequence
    )
    ours = message.message()
    assert ours["Date"]
    assert wire(ours) == wire(djangos(message))


@pytest.mark.parametrize(
    "from_email", ["Voxanne <hello@voxanne.test>", "Zoë at Voxanne <zoe@voxanne.test>"]
)
def test_same_bytes_with_a_sender_name_outside_ascii(settings, from_email):
    settings.DEFAULT_FROM_EMAIL = from_email
    message = Composer().compose(
        org_id=uuid.uuid4(), clinic_name="Núñez", email="a@b.test", sequence=2
    )
    assert wire(message.message()) == wire(djangos(message))


@pytest.mark.parametrize(
    "body",
    [
        "a line Django must quoted-printable encode: " + "x" * 1200,
        "\u2028".join(["y" * 600, "z" * 600]),  # a break only str.splitlines() sees
        "plain ascii",
        "£10 in 8 bits",
    ],
)
def test_long_lines_and_every_transfer_encoding_match_django(body):
    message = AbandonmentMessage(
        subject="s",
        body=body,
        to=["a@b.test"],
        headers={"Message-ID": "<one@voxanne.test>"},
    )
    message.attach_alternative(f"<p>{body}</p>", "text/html")
    assert wire(message.message()) == wire(djangos(message))


def test_a_message_without_its_own_id_or_alternatives_is_built_by_django():
    bare = AbandonmentMessage(subject="s", body="b", to=["a@b.test"])
    assert bare.message()["Message-ID"]  # made by Django
    assert bare.message().get_content_type() == "text/plain"


def test_deep_copy_shares_no_container_with_the_original(composer):
    message = composer.compose(
        org_id=uuid.uuid4(), clinic_name="Bright", email="a@b.test", sequence=3
    )
    copied = copy.deepcopy(message)
    assert wire(copied.message()) == wire(message.message())
    copied.to.append("b@b.test")
    copied.extra_headers["X-Extra"] = "1"
    copied.alternatives.clear()
    assert message.to == ["a@b.test"]
    assert "X-Extra" not in message.extra_headers
    assert len(message.alternatives) == 1
