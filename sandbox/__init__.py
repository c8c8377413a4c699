"""Wire-level doubles of the providers on 127.0.0.1: `make run`'s sandbox, the tests, bench.

Not test code: scripts/stack.py serves them when no real credentials are set. Import each from
its module (`sandbox.twilio.TwilioDouble`, `sandbox.vapi.VapiDouble`).
"""
