"""Wire-level doubles of Twilio and Vapi on 127.0.0.1: tests, `make run`'s sandbox, bench."""

from tests.doubles.twilio import TwilioDouble
from tests.doubles.vapi import VapiDouble

__all__ = ["TwilioDouble", "VapiDouble"]
