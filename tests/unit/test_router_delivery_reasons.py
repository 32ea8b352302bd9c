"""A failed delivery says why (services/common/errors.py): a 401 (bad key: a person must act), a 400 (a bad
payload: a bug) and a 429 (slow down) are told apart in the metrics and the error, and only the retriable
reasons are sent again. The receivers are the real ones, over httpx's in-memory transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import REGISTRY

from services.common.codec import pb
from services.common.errors import DeliveryError, DeliveryReason, TriageError
from services.router.delivery import Outcome, RetryPolicy, attempt_once, call_with_retry
from services.router.grouping import IncidentGrouper, Page, Sample
from services.router.paging import PagerDutyReceiver, SlackReceiver
from services.router.receivers import WebhookReceiver, header_safe
from services.router.routing_file import RoutingConfigError, loads
from services.router.transport import classify_http, reason_of_status

T0 = 1_800_000_000.0
FAST = RetryPolicy(attempts=3, backoff=0.001, backoff_max=0.002)


def _page() -> Page:
    g = IncidentGrouper().add(receiver="pd", route="root/0", incident_id="inc-1", group_by=["brand"],
                              labels={"brand": "acme"}, priority="P1", reasons=["outage report 0.94"],
                              sample=Sample("x:1", "down again", "https://x.com/1", "en"), now=T0, group_wait=30,
                              group_interval=300, repeat_interval=4 * 3600, quiet_period=900)
    assert g is not None
    return Page("trigger", g, T0 + 30)


def _attempts(receiver: str, outcome: str, reason: str) -> float:
    labels = {"receiver": receiver, "outcome": outcome, "reason": reason}
    return REGISTRY.get_sample_value("triage_router_delivery_attempts_total", labels) or 0.0


def _page_to(handler: Callable[[httpx.Request], httpx.Response], receiver: str) -> tuple[Outcome, int]:
    """Page through a real PagerDutyReceiver whose HTTP answers come from `handler`; (outcome, requests made)."""
    calls = 0

    def counting(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return handler(request)

    async def go() -> Outcome:
        async with httpx.AsyncClient(transport=httpx.MockTransport(counting)) as client:
            pd = PagerDutyReceiver(receiver, client, "k" * 32, "https://pd.test/v2/enqueue")
            return await call_with_retry(receiver, lambda: pd.notify(_page()), FAST)

    return asyncio.run(go()), calls


@pytest.mark.parametrize(("status", "reason"), [
    (400, "client_error"), (404, "client_error"), (422, "client_error"), (301, "client_error"),
    (401, "auth_error"), (403, "auth_error"),
    (429, "rate_limited"), (425, "rate_limited"), (408, "timeout"),
    (500, "server_error"), (502, "server_error"), (503, "server_error"),
])
def test_each_http_status_has_its_reason(status: int, reason: str) -> None:
    assert reason_of_status(status) == reason
    with pytest.raises(DeliveryError) as err:
        classify_http(httpx.Response(status, text="no"), "webhook w")
    assert err.value.reason == reason
    assert err.value.retriable == (reason not in ("client_error", "auth_error"))


def test_a_2xx_is_no_error_and_retry_after_is_kept() -> None:
    classify_http(httpx.Response(202), "webhook w")
    with pytest.raises(DeliveryError) as err:
        classify_http(httpx.Response(429, headers={"Retry-After": "7"}), "webhook w")
    assert err.value.retry_after == 7.0 and err.value.retriable


def test_a_401_a_400_and_a_429_are_told_apart_in_the_metrics() -> None:
    before = {r: _attempts("pd-reasons", o, r) for r, o in
              (("auth_error", "rejected"), ("client_error", "rejected"), ("rate_limited", "retryable"))}

    unauthorized, calls_401 = _page_to(lambda r: httpx.Response(401, json={"message": "bad key"}), "pd-reasons")
    bad_request, calls_400 = _page_to(lambda r: httpx.Response(400, json={"status": "invalid event"}), "pd-reasons")
    throttled, calls_429 = _page_to(lambda r: httpx.Response(429, json={"message": "slow down"}), "pd-reasons")

    assert (unauthorized.reason, bad_request.reason, throttled.reason) == ("auth_error", "client_error", "rate_limited")
    assert not unauthorized.retriable and not bad_request.retriable and throttled.retriable
    assert (calls_401, calls_400, calls_429) == (1, 1, 3)   # rejected ones are not sent again
    assert _attempts("pd-reasons", "rejected", "auth_error") - before["auth_error"] == 1
    assert _attempts("pd-reasons", "rejected", "client_error") - before["client_error"] == 1
    assert _attempts("pd-reasons", "retryable", "rate_limited") - before["rate_limited"] == 3


def test_no_answer_is_a_timeout_or_a_network_failure_and_both_are_retried() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    (slow, slow_calls), (down, down_calls) = _page_to(timeout, "pd-timeout"), _page_to(refused, "pd-network")
    assert (slow.reason, down.reason) == ("timeout", "network")
    assert slow_calls == down_calls == 3
    assert _attempts("pd-timeout", "retryable", "timeout") >= 3
    assert _attempts("pd-network", "retryable", "network") >= 3


def test_slack_api_errors_answered_with_http_200_have_their_reasons() -> None:
    async def notify(error: str) -> DeliveryError:
        def handler(request: httpx.Request) -> httpx.Response:
            if error.startswith("answer:"):  # an HTTP 200 whose body is not Slack's object
                return httpx.Response(200, content=error.removeprefix("answer:").encode())
            return httpx.Response(200, json={"ok": False, "error": error})

        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            slack = SlackReceiver("sl", client, "xoxb-test", "C1", "https://slack.test/api/chat.postMessage")
            with pytest.raises(DeliveryError) as err:
                await slack.notify(_page())
            return err.value

    reasons = {e: asyncio.run(notify(e)).reason for e in ("invalid_auth", "ratelimited", "channel_not_found",
                                                           "internal_error")}
    assert reasons == {"invalid_auth": "auth_error", "ratelimited": "rate_limited",
                       "channel_not_found": "client_error", "internal_error": "server_error"}
    # a proxy's page or a JSON list instead of Slack's object: worth another attempt, never an exception
    assert {asyncio.run(notify(a)).reason for a in ("answer:<html>bad gateway</html>", "answer:[1, 2]")} == {
        "server_error"}


def test_the_router_errors_share_the_project_base_and_keep_their_own() -> None:
    with pytest.raises(RoutingConfigError) as err:
        loads("route: {receiver: nowhere}\nreceivers: []\n")
    assert isinstance(err.value, TriageError) and isinstance(err.value, ValueError)
    assert isinstance(DeliveryError("x", DeliveryReason.TIMEOUT), TriageError)


def test_an_id_outside_ascii_is_percent_encoded_in_the_idempotency_key_and_kept_in_the_body() -> None:
    """A mention id is `<source>:<external id>` and ingest accepts any printable external id ("x:ñandú"), but HTTP
    header values are ASCII: httpx raised UnicodeEncodeError out of the router's batch, which was retried for
    ever and stalled its partition (seen in tests/e2e/test_pipeline.py after the fuzz tests' mentions)."""
    assert header_safe("x:1850:hook") == "x:1850:hook"                # ASCII ids keep their keys
    assert header_safe("x:ñandú:hook") == "x:%C3%B1and%C3%BA:hook"
    assert header_safe("x:%C3%B1") == "x:%25C3%25B1" != header_safe("x:ñ")  # one-to-one
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    async def go() -> Outcome:
        routed = pb.RoutedMention(route="root/0", receiver="hook")
        routed.scored.mention.mention_id = "x:ñandú-日本"
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            hook = WebhookReceiver("hook", "https://hook.test/in", client, secret=b"s" * 32)
            return await call_with_retry("hook", lambda: hook.deliver(routed), FAST)

    outcome = asyncio.run(go())
    assert outcome.delivered and len(seen) == 1
    assert seen[0].headers["Idempotency-Key"] == "x:%C3%B1and%C3%BA-%E6%97%A5%E6%9C%AC:hook"
    assert json.loads(seen[0].content)["mention_id"] == "x:ñandú-日本"


def test_a_request_that_cannot_be_made_is_a_rejected_delivery_not_an_exception_out_of_the_batch() -> None:
    """Anything a receiver raises besides DeliveryError (a request that cannot be built from this one item, a
    bug) is this item's client_error: dead-lettered with the reason, not retried, and the batch goes on."""
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise UnicodeEncodeError("ascii", "x:ñ", 2, 3, "ordinal not in range(128)")

    before = _attempts("wh-broken", "rejected", "client_error")
    retried = asyncio.run(call_with_retry("wh-broken", broken, FAST))
    once = asyncio.run(attempt_once("wh-broken", broken))
    for outcome in (retried, once):
        assert not outcome.delivered and outcome.reason == "client_error" and not outcome.retriable
        assert "could not be made: UnicodeEncodeError" in outcome.error
    assert calls == 2
    assert _attempts("wh-broken", "rejected", "client_error") - before == 2
