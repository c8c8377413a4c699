"""Schemathesis checks of our own, loaded with SCHEMATHESIS_HOOKS=tests.fuzz.hooks."""

import schemathesis


@schemathesis.check
def error_body_is_one_plain_sentence(ctx, response, case):
    """Every 4xx/5xx answer is JSON {"error": str} (optionally code/fields) with an id."""
    if response.status_code < 400:
        return None
    body = response.json()
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        raise AssertionError(f"error body is not {{'error': str}}: {response.text[:200]}")
    extra = set(body) - {"error", "code", "fields", "valid_event_names"}
    if extra:
        raise AssertionError(f"error body carries unexpected keys {sorted(extra)}")
    if "x-request-id" not in {name.lower() for name in response.headers}:
        raise AssertionError("error response has no X-Request-ID")
    return None
