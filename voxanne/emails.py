"""Our emails: a text body and an HTML alternative, each rendered from its own template."""

from __future__ import annotations

from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string


def templated_email(
    template: str, context: dict, *, subject: str, to: list[str], **options
) -> EmailMultiAlternatives:
    """The email with `<template>.txt` as its body and `<template>.html` as its HTML part, both
    rendered with `context`. `options` go to EmailMultiAlternatives (from_email, headers)."""
    message = EmailMultiAlternatives(
        subject=subject, body=render_to_string(f"{template}.txt", context), to=to, **options
    )
    message.attach_alternative(render_to_string(f"{template}.html", context), "text/html")
    return message
