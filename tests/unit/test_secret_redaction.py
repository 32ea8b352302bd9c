"""Receiver secrets never reach a delivery error (logged, and stored on the pages topic), even when echoed."""

from __future__ import annotations

import httpx
import pytest

from services.router.transport import DeliveryError, classify_http, redact, secret_from


def test_an_echoed_routing_key_is_redacted_from_the_delivery_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UT_PD_KEY", "R0UTINGKEY-ut-0123456789abcdef")
    key = secret_from({"routing_key_env": "UT_PD_KEY"}, "routing_key_env")
    assert key == b"R0UTINGKEY-ut-0123456789abcdef"
    resp = httpx.Response(500, text='{"status": "error", "routing_key": "R0UTINGKEY-ut-0123456789abcdef"}')
    with pytest.raises(DeliveryError) as err:
        classify_http(resp, "pagerduty pd")
    assert "R0UTINGKEY-ut" not in str(err.value)
    assert str(err.value) == 'pagerduty pd answered HTTP 500: {"status": "error", "routing_key": "[redacted]"}'
    assert err.value.retryable


def test_other_text_is_left_alone() -> None:
    assert redact("slack s: invalid_auth") == "slack s: invalid_auth"
