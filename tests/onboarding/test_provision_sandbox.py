"""`make run`'s telephony sandbox: the same doubles, started only when there is nothing real."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack():
    spec = importlib.util.spec_from_file_location("stack", ROOT / "scripts" / "stack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    for double in module._keep_alive:
        double.stop()


def test_the_sandbox_serves_twilio_and_vapi_doubles_and_says_so(stack, capsys):
    env = {"TELEPHONY_SANDBOX": "1"}
    stack.start_telephony_sandbox(env)
    assert "telephony SANDBOX" in capsys.readouterr().out
    twilio = httpx.get(
        f"{env['TWILIO_API_BASE_URL']}/2010-04-01/Accounts/{env['TWILIO_MASTER_ACCOUNT_SID']}.json",
        auth=(env["TWILIO_MASTER_ACCOUNT_SID"], env["TWILIO_MASTER_AUTH_TOKEN"]),
    )
    vapi = httpx.get(
        f"{env['VAPI_BASE_URL']}/phone-number",
        headers={"Authorization": f"Bearer {env['VAPI_PRIVATE_KEY']}"},
    )
    assert (twilio.status_code, vapi.status_code) == (200, 200)


@pytest.mark.parametrize(
    "env",
    [
        {"TELEPHONY_SANDBOX": "0"},
        {"TELEPHONY_SANDBOX": "1", "TWILIO_MASTER_ACCOUNT_SID": "ACreal"},
    ],
)
def test_no_sandbox_when_it_is_off_or_real_credentials_are_set(stack, env):
    before = dict(env)
    stack.start_telephony_sandbox(env)
    assert env == before and stack._keep_alive == []
