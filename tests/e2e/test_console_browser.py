"""The responder console in a real browser (Debian's headless Chromium via selenium) on the real broker.

An incident, its page and queue items are produced to Kafka; `triage console` runs as its own
process and rebuilds its views from the topics; the browser sees the incident on `/`, opens its page
(chart, samples, page history), marks an item responded — a ResponseEvent lands on `responses` —
and sends a wrong-priority correction — a LabelFeedback lands on `feedback` — and silences the
incident's pages from its page and expires the silence (two Silence records on `silences`). A second test runs the
real router: the items it routes show up in the console, and "responded" drops the router's
open-items gauge. Screenshots of each page are written to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from support import ServiceProcess, consume, free_port, wait_for

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.timeutil import now_ts, ts_from_epoch
from services.common.topics import all_topic_specs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
)


def _browser():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--lang=en-US"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def _submit(browser, button, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Click a form's button and wait until the page it was on is replaced by the answer's redirect: on a
    loaded machine the click can return before the POST is answered, and the old page is still there."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    page = browser.find_element(By.TAG_NAME, "html")
    button.click()

    def replaced(_driver) -> bool:  # type: ignore[no-untyped-def]
        # Chromium answers a look at the old page mid-navigation with "Node with given id does not belong to
        # the document" instead of a stale-element error (a CI dry run): the old page is gone either way.
        try:
            return bool(ec.staleness_of(page)(_driver))
        except (StaleElementReferenceException, WebDriverException) as exc:
            if isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in str(exc):
                return True
            raise

    WebDriverWait(browser, timeout).until(replaced)


async def _produce(bootstrap: str, tag: str) -> tuple[str, list[str]]:
    import time

    now = time.time()
    incident_id = f"inc-{tag}"
    inc = pb.Incident(id=incident_id, brand="nordwave", kind=pb.OUTAGE_CLUSTER, state=pb.OPEN, severity=0.91,
                      opened_at=ts_from_epoch(now - 300), updated_at=ts_from_epoch(now - 30), mention_count=6,
                      reasons=["6 outage reports in 5 min (baseline 0.2)"])
    inc.evidence.top_terms.extend(["down", "login", "503"])
    inc.evidence.languages.update({"en": 4, "es": 2})
    inc.evidence.sources["x"] = 6
    mention_ids = []
    records: list[tuple[str, str, bytes]] = []
    texts = ["@FjordTel app is down, can't log in", "@FjordTel la app no funciona", "error 503 on @FjordTel",
             "@FjordTel down again?", "@FjordTel no puedo entrar", "@FjordTel login broken"]
    for k, text in enumerate(texts):
        ext = f"{tag}-{k}"
        mid = f"x:{ext}"
        mention_ids.append(mid)
        m = pb.Mention(source=pb.SOURCE_X, external_id=ext, mention_id=mid, text=text, brands=["nordwave"],
                       url=f"https://x.com/u{k}/status/{ext}", created_at=ts_from_epoch(now - 290 + 50 * k),
                       author=pb.Author(handle=f"user{k}", follower_count=100 * (k + 1)))
        s = pb.ScoredMention(mention=m, language="es" if "no " in text else "en", priority=pb.P1 if k < 3 else pb.P2,
                             reasons=["outage report 0.93", f"incident {incident_id}"], incident_id=incident_id,
                             sentiment=pb.SentimentScore(label=pb.NEGATIVE if k % 3 else pb.NEUTRAL),
                             model_version="e2e")
        s.intents["outage_report"] = 0.93
        routed = pb.RoutedMention(scored=s, queue="urgent", route="root/p1", receiver="urgent", routed_at=now_ts(),
                                  respond_by=ts_from_epoch(now + (-60 if k == 0 else 3600)))
        records.append((topics.queue_topic("urgent"), mid, codec.encode(routed)))
        if k < 2:
            inc.evidence.sample_mention_ids.append(mid)
            inc.evidence.sample_urls.append(m.url)
    records.append((topics.INCIDENTS, incident_id, codec.encode(inc)))
    records.append((topics.PAGES, incident_id, codec.encode(pb.PageRecord(
        incident_id=incident_id, receiver="pagerduty", action="trigger", delivered=True, detail="202", at=now_ts()))))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(t, v, key=k.encode()) for t, k, v in records])
    finally:
        await producer.stop()
    return incident_id, mention_ids


async def test_console_in_a_browser(kafka_bootstrap: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    incident_id, mention_ids = await _produce(kafka_bootstrap, tag)
    port = free_port()
    console = ServiceProcess("console", {"TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "TRIAGE_CONSOLE_PORT": str(port),
                                         "TRIAGE_CONSOLE_GROUP_ID": f"e2e-console-{tag}",
                                         "TRIAGE_CONSOLE_POLL_SECONDS": "2"}, tmp_path)
    base = f"http://127.0.0.1:{port}"
    browser = None
    try:
        async def incident_listed() -> bool:
            assert console.alive(), console.log_tail()
            try:
                async with httpx.AsyncClient(timeout=3) as client:
                    data = (await client.get(f"{base}/api/incidents")).json()
            except httpx.HTTPError:
                return False
            return any(i["id"] == incident_id for i in data["incidents"])

        await wait_for(incident_listed, timeout=60, what="the console to read the incident from Kafka")
        browser = await asyncio.to_thread(_browser)

        def incidents_page() -> None:
            browser.get(base + "/")
            row = browser.find_element(By.CSS_SELECTOR, f'tr.incident[data-id="{incident_id}"]')
            assert "nordwave" in row.text and "outage cluster" in row.text
            assert "pagerduty trigger delivered" in row.text
            browser.save_screenshot(str(tmp_path / "01-incidents.png"))
            row.find_element(By.LINK_TEXT, incident_id).click()

        await asyncio.to_thread(incidents_page)

        def incident_page() -> None:
            assert browser.current_url.endswith(f"/incidents/{incident_id}")
            bars = browser.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")
            assert len(bars) >= 5, "a bar per minute with mentions"
            samples = browser.find_elements(By.CSS_SELECTOR, "ul.samples li.sample a")
            assert [a.get_attribute("href") for a in samples][:1] == [f"https://x.com/u0/status/{tag}-0"]
            assert "6 outage reports in 5 min" in browser.find_element(By.CSS_SELECTOR, "ul.reasons").text
            assert "pagerduty" in browser.find_element(By.CSS_SELECTOR, "table.pages").text
            browser.save_screenshot(str(tmp_path / "02-incident.png"))
            card = browser.find_element(By.CSS_SELECTOR, f'div.item[data-mention="{mention_ids[0]}"]')
            assert "overdue by" in card.text
            _submit(browser, card.find_element(By.CSS_SELECTOR, "button.responded"))
            # Back on the incident page, the answered item is no longer among the open ones.
            assert browser.current_url.endswith(f"/incidents/{incident_id}")
            assert not browser.find_elements(By.CSS_SELECTOR, f'div.item[data-mention="{mention_ids[0]}"]')
            browser.save_screenshot(str(tmp_path / "03-incident-after-response.png"))

        await asyncio.to_thread(incident_page)

        def silence_from_incident_page() -> None:
            browser.get(f"{base}/incidents/{incident_id}")
            form = browser.find_element(By.CSS_SELECTOR, "form.silence")
            browser.find_element(By.XPATH, "//summary[text()='new silence']").click()
            matchers = form.find_element(By.NAME, "matchers").get_attribute("value") or ""
            assert matchers.splitlines() == ['brand="nordwave"', f'incident="{incident_id}"'], matchers
            form.find_element(By.NAME, "created_by").send_keys("ana")
            form.find_element(By.NAME, "comment").send_keys("status page is up")
            form.find_element(By.CSS_SELECTOR, "button.silence").click()
            # The list is the console's view of the silences topic: on a loaded machine the new record can
            # take a moment to come back; reload until it is there.
            deadline = time.monotonic() + 30
            while not browser.find_elements(By.CSS_SELECTOR, "table.silences tr.silence"):
                assert time.monotonic() < deadline, "the new silence never appeared on the incident page"
                time.sleep(0.5)
                browser.get(f"{base}/incidents/{incident_id}")
            row = browser.find_element(By.CSS_SELECTOR, "table.silences tr.silence")
            assert "active" in row.text and "status page is up" in row.text and "ana" in row.text
            browser.save_screenshot(str(tmp_path / "05-incident-silenced.png"))
            row.find_element(By.CSS_SELECTOR, "button.expire").click()
            deadline = time.monotonic() + 30
            while not browser.find_elements(By.ID, "no-silences"):
                assert time.monotonic() < deadline, "the expired silence never left the list"
                time.sleep(0.5)
                browser.get(f"{base}/incidents/{incident_id}")

        await asyncio.to_thread(silence_from_incident_page)

        def queue_page() -> None:
            # Filtered to this run's items: the session broker holds other tests' urgent items, and past a page
            # (50) of them this run's would sort onto a later page.
            browser.get(base + f"/queues/urgent?q={tag}")
            card = browser.find_element(By.CSS_SELECTOR, f'div.item[data-mention="{mention_ids[4]}"]')
            reply = card.find_element(By.CSS_SELECTOR, "textarea.reply").get_attribute("value") or ""
            assert reply.startswith("Hola @user4"), reply
            card.find_element(By.TAG_NAME, "summary").click()
            Select(card.find_element(By.NAME, "corrected_priority")).select_by_value("P4")
            browser.save_screenshot(str(tmp_path / "04-queue.png"))
            card.find_element(By.CSS_SELECTOR, "button.feedback").click()
            assert urlsplit(browser.current_url).path == "/queues/urgent", browser.current_url
            assert f"q={tag}" in urlsplit(browser.current_url).query, "back to the filtered queue"

        await asyncio.to_thread(queue_page)

        async def published() -> tuple[pb.ResponseEvent, pb.LabelFeedback] | None:
            recs = await consume(kafka_bootstrap, [topics.RESPONSES, topics.FEEDBACK], idle=0.5, timeout=5)
            responses = [codec.decode(v, pb.ResponseEvent) for t, _, v in recs if t == topics.RESPONSES]
            feedback = [codec.decode(v, pb.LabelFeedback) for t, _, v in recs if t == topics.FEEDBACK]
            ev = next((e for e in responses if e.mention_id == mention_ids[0]), None)
            fb = next((f for f in feedback if f.mention_id == mention_ids[4]), None)
            return (ev, fb) if ev and fb else None

        ev, fb = await wait_for(published, timeout=30, what="the ResponseEvent and the LabelFeedback on Kafka")
        assert ev.kind == pb.RESPONDED and ev.queue == "urgent" and ev.responder == "console"
        assert fb.original_priority == pb.P2 and fb.corrected_priority == pb.P4 and fb.brand == "nordwave"
        assert fb.text == "@FjordTel no puedo entrar"

        async def silence_versions() -> list[pb.Silence] | None:
            recs = await consume(kafka_bootstrap, [topics.SILENCES], idle=0.5, timeout=5)
            mine = [codec.decode(v, pb.Silence) for _, _, v in recs if v]
            mine = [m for m in mine if m.incident_id == incident_id]
            return mine if len(mine) == 2 else None  # the silence, then the same id expired

        created, expired = await wait_for(silence_versions, timeout=30, what="the silence and its expiry on Kafka")
        assert created.id == expired.id and list(created.matchers) == ['brand="nordwave"', f'incident="{incident_id}"']
        assert created.created_by == "ana" and expired.ends_at.seconds < created.ends_at.seconds
        for name in ("01-incidents", "02-incident", "03-incident-after-response", "04-queue", "05-incident-silenced"):
            assert (tmp_path / f"{name}.png").stat().st_size > 5000, name
    finally:
        if browser is not None:
            await asyncio.to_thread(browser.quit)
        console.stop()


def _router_open_items(metrics_text: str, queue: str) -> float:
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("triage_router_open_items{") and f'queue="{queue}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_responded_in_the_browser_stops_the_routers_sla_clock(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The real router routes scored mentions into `urgent` with a deadline; the console shows them; a click
    on "responded" publishes the ResponseEvent and the router's open-items gauge drops by one."""
    from selenium.webdriver.common.by import By

    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    router_metrics = free_port()
    router = ServiceProcess("router", {"TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap,
                                       "TRIAGE_ROUTER_APP_ID": f"e2e-cr-{tag}", "TRIAGE_TICK_SECONDS": "0.5",
                                       "TRIAGE_ROUTER_METRICS_PORT": str(router_metrics),
                                       "TRIAGE_DATA_DIR": str(tmp_path / "router-data")}, tmp_path)
    port = free_port()
    console = ServiceProcess("console", {"TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "TRIAGE_CONSOLE_PORT": str(port),
                                         "TRIAGE_CONSOLE_GROUP_ID": f"e2e-console-{tag}"}, tmp_path)
    base = f"http://127.0.0.1:{port}"
    mids = [f"x:{tag}-{k}" for k in range(3)]
    browser = None
    try:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
        await producer.start()
        try:
            for k, mid in enumerate(mids):
                m = pb.Mention(source=pb.SOURCE_X, external_id=mid[2:], mention_id=mid, brands=["nordwave"],
                               text=f"@FjordTel my card was charged twice, please help #{k}", created_at=now_ts(),
                               received_at=now_ts(), author=pb.Author(handle=f"cust{k}", follower_count=50))
                s = pb.ScoredMention(mention=m, language="en", priority=pb.P2, reasons=["complaint 0.91"],
                                     sentiment=pb.SentimentScore(label=pb.NEGATIVE), model_version="e2e")
                s.intents["complaint"] = 0.91
                await producer.send_and_wait(topics.MENTIONS_SCORED, codec.encode(s), key=mid.encode())
        finally:
            await producer.stop()

        async def mine_in_console() -> list[dict] | None:  # type: ignore[type-arg]
            assert router.alive(), router.log_tail()
            assert console.alive(), console.log_tail()
            try:
                async with httpx.AsyncClient(timeout=3) as client:
                    items = (await client.get(f"{base}/api/queues/urgent")).json()["items"]
            except (httpx.HTTPError, ValueError, KeyError):
                return None
            mine = [i for i in items if i["mention_id"] in mids]
            return mine if len(mine) == len(mids) else None

        mine = await wait_for(mine_in_console, timeout=120, what="the router to route 3 items the console shows")
        assert all(i["respond_by"] > 0 for i in mine), "P2 items carry a first-response deadline"

        async def gauge() -> float:
            async with httpx.AsyncClient(timeout=3) as client:
                return _router_open_items((await client.get(f"http://127.0.0.1:{router_metrics}/metrics")).text,
                                          "urgent")

        async def steady() -> float | None:
            first = await gauge()
            await asyncio.sleep(1.5)
            return first if first >= len(mids) and await gauge() == first else None

        before = await wait_for(steady, timeout=60, what="the router's open-items gauge to settle")
        browser = await asyncio.to_thread(_browser)

        def click_responded() -> None:
            # Searched by this run's tag: the session broker holds other tests' urgent items too, and with more than
            # a page of them (50) these three may sort onto a later page (a `make test` run).
            browser.get(base + f"/queues/urgent?q={tag}")
            card = browser.find_element(By.CSS_SELECTOR, f'div.item[data-mention="{mids[1]}"]')
            _submit(browser, card.find_element(By.CSS_SELECTOR, "button.responded"))
            assert not browser.find_elements(By.CSS_SELECTOR, f'div.item[data-mention="{mids[1]}"]')
            browser.save_screenshot(str(tmp_path / "05-queue-after-response.png"))

        await asyncio.to_thread(click_responded)

        async def dropped() -> bool:
            return await gauge() == before - 1

        await wait_for(dropped, timeout=30, what=f"the router's open urgent items to drop from {before:g}")
    finally:
        if browser is not None:
            await asyncio.to_thread(browser.quit)
        console.stop()
        router.stop()
