"""Triage before paging in a real browser (Debian's headless Chromium via selenium): the router and the console
as their own processes on a private broker, PagerDuty and Slack as local servers shaped like the real APIs.

Two incidents of `triage: true` routes are held: the Triage page lists both and PagerDuty hears nothing.
The responder clicks "page now" on one: PagerDuty gets exactly one trigger for it. Nobody decides on the
other: it pages by itself, exactly once, after its `triage_timeout`. Screenshots of the Triage page before
and after are written to the test's tmp_path (01-triage-held.png, 02-triage-after-page-now.png,
03-triage-after-timeout.png).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from support import PD_KEY, SLACK_TOKEN, FakeApis, ServiceProcess, free_port, running_app, wait_for
from test_console_browser import _browser, _submit, pytestmark  # noqa: F401  (the same skip without Chromium)

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics, make_producer
from services.common.timeutil import ts_from_epoch
from services.common.topics import all_topic_specs

ROUTES = """\
route:
  receiver: normal
  routes:
    - matchers: ['priority="P1"', 'brand="nordwave"']
      receiver: pagerduty
      group_wait: 1s
      triage: true
      triage_timeout: 10m
      triage_notify: chat
    - matchers: ['priority="P1"', 'brand="fjordtel"']
      receiver: pagerduty
      group_wait: 1s
      triage: true
      triage_timeout: 60s
receivers:
  - name: pagerduty
    pagerduty: {url: "%(base)s/v2/enqueue", routing_key_env: TEST_PD_KEY}
  - name: chat
    slack: {url: "%(base)s/api/chat.postMessage", token_env: TEST_SLACK_TOKEN, channel: C0TRIAGE}
  - name: normal
    kafka_queue: {queue: normal}
"""
CONFIRM, TIMEOUT = "inc-nordwave-small-cluster", "inc-fjordtel-new-brand"


async def _produce() -> list[tuple[str, bytes, bytes]]:
    now = time.time()
    records = []
    for incident_id, brand in ((CONFIRM, "nordwave"), (TIMEOUT, "fjordtel")):
        inc = pb.Incident(id=incident_id, brand=brand, kind=pb.OUTAGE_CLUSTER, state=pb.OPEN, severity=0.3,
                          opened_at=ts_from_epoch(now - 60), updated_at=ts_from_epoch(now), mention_count=6,
                          reasons=["6 outage reports in 5 min (baseline 1.2)"])
        records.append((topics.INCIDENTS, incident_id.encode(), codec.encode(inc)))
        for k in range(6):
            mid = f"x:{brand}-{k}"
            s = pb.ScoredMention(priority=pb.P1, language="en", incident_id=incident_id,
                                 reasons=["outage report 0.62"], intents={"outage_report": 0.62})
            m = s.mention
            m.source, m.external_id, m.mention_id = pb.SOURCE_X, mid[2:], mid
            m.text, m.url = f"@{brand} is the app down for anyone? #{k}", f"https://x.com/u{k}/status/{k}"
            m.brands.append(brand)
            records.append((topics.MENTIONS_SCORED, mid.encode(), codec.encode(s)))
    return records


async def test_triage_page_holds_pages_on_page_now_and_after_the_timeout(kafka_broker_factory, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    bootstrap = kafka_broker_factory().bootstrap_servers
    await ensure_topics(bootstrap, all_topic_specs())
    apis = FakeApis()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    console = ServiceProcess("console", {"TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_CONSOLE_PORT": str(port),
                                         "TRIAGE_CONSOLE_GROUP_ID": "e2e-triage", "TRIAGE_CONSOLE_POLL_SECONDS": "60"},
                             tmp_path)
    router = None
    browser = None
    async with running_app(apis.app()) as fake:
        routes = tmp_path / "routes.yaml"
        routes.write_text(ROUTES % {"base": fake})
        try:
            producer = make_producer(bootstrap, "e2e-producer")
            await producer.start()
            try:
                await asyncio.gather(*[await producer.send(t, v, key=k) for t, k, v in await _produce()])
            finally:
                await producer.stop()
            router = ServiceProcess("router", {
                "TRIAGE_KAFKA_BOOTSTRAP": bootstrap, "TRIAGE_ROUTES_FILE": str(routes),
                "TRIAGE_ROUTER_APP_ID": "e2e-router-triage", "TRIAGE_ROUTER_METRICS_PORT": str(free_port()),
                "TRIAGE_TICK_SECONDS": "0.5", "TRIAGE_DATA_DIR": str(tmp_path / "router-data"),
                "TRIAGE_CONSOLE_URL": base, "TEST_PD_KEY": PD_KEY, "TEST_SLACK_TOKEN": SLACK_TOKEN}, tmp_path)

            async def both_held() -> bool:
                assert console.alive(), console.log_tail()
                assert router is not None and router.alive(), router.log_tail() if router else ""
                try:
                    async with httpx.AsyncClient(timeout=3) as client:
                        pending = (await client.get(f"{base}/api/triage")).json()["pending"]
                except (httpx.HTTPError, ValueError):
                    return False
                held.update({e["incident_id"]: e["hold_until"] for e in pending})
                return set(held) == {CONFIRM, TIMEOUT}

            held: dict[str, float] = {}
            await wait_for(both_held, timeout=120, what="the Triage page to list both held incidents", interval=1)
            assert apis.pagerduty == []
            browser = await asyncio.to_thread(_browser)

            def page_now() -> None:
                browser.get(base + "/triage")
                rows = browser.find_elements(By.CSS_SELECTOR, "table.triage.pending tr.held")
                assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == [TIMEOUT, CONFIRM]  # soonest first
                assert "due in" in rows[0].text and "held for triage: " in rows[1].text
                browser.save_screenshot(str(tmp_path / "01-triage-held.png"))
                row = rows[1]
                row.find_element(By.NAME, "comment").send_keys("confirmed on the status page")
                _submit(browser, row.find_element(By.CSS_SELECTOR, "button.page-now"))
                assert browser.current_url == base + "/triage"
                left = [r.find_element(By.TAG_NAME, "a").text
                        for r in browser.find_elements(By.CSS_SELECTOR, "table.triage.pending tr.held")]
                assert left == [TIMEOUT]
                assert "page now by" in browser.find_element(By.CSS_SELECTOR, "table.triage.recent").text
                browser.save_screenshot(str(tmp_path / "02-triage-after-page-now.png"))

            await asyncio.to_thread(page_now)
            await wait_for(lambda: [e for e in apis.pd("trigger") if e["dedup_key"] == CONFIRM], 60,
                           "the PagerDuty trigger after page now")
            if time.time() < held[TIMEOUT] - 1:  # (a browser on a busy machine may take most of the minute)
                assert not [e for e in apis.pagerduty if e["dedup_key"] == TIMEOUT]  # still held
            await wait_for(lambda: [e for e in apis.pd("trigger") if e["dedup_key"] == TIMEOUT], 60,
                           "the trigger of the undecided incident after its triage_timeout")
            await asyncio.sleep(4)  # a second trigger of either would show up by now

            def after_timeout() -> None:
                deadline = time.monotonic() + 30
                while True:
                    browser.get(base + "/triage")
                    text = browser.find_element(By.ID, "live").text
                    if "paged by itself" in text and "paged: page now by" in text:
                        break
                    assert time.monotonic() < deadline, text
                    time.sleep(0.5)
                assert browser.find_elements(By.ID, "no-triage")
                browser.save_screenshot(str(tmp_path / "03-triage-after-timeout.png"))

            await asyncio.to_thread(after_timeout)
        finally:
            if browser is not None:
                await asyncio.to_thread(browser.quit)
            logs = router.log_tail() if router is not None else ""
            if router is not None:
                router.stop()
            console.stop()

    assert [e["dedup_key"] for e in apis.pd("trigger")].count(CONFIRM) == 1, logs
    assert [e["dedup_key"] for e in apis.pd("trigger")].count(TIMEOUT) == 1, logs
    notices = [m for m in apis.slack if m["text"].startswith(":raising_hand:")]
    assert len(notices) == 1 and "nordwave" in notices[0]["text"]  # only the route with triage_notify
    for name in ("01-triage-held", "02-triage-after-page-now", "03-triage-after-timeout"):
        assert (tmp_path / f"{name}.png").stat().st_size > 5000, name
