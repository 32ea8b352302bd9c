"""An outage burst worked in the console in a real browser (Debian's headless Chromium via selenium) on the
real broker.

A burst of 200 posts for one brand's incident, in eight languages, lands in the `urgent` queue beside a
second, smaller incident of the same brand and a few unrelated posts; `triage console` runs as its own
process and rebuilds its views from the topics. The responder sees the burst as one group on the queue,
filters the queue to the incident with the filter form, and replies to all 200 with the status-update
template in one action (one text per language, the status page link filled in): every item's
ResponseEvent lands on `responses` exactly once, its reply in the item's language. The smaller incident
is marked all responded from its own page (one ResponseEvent each, no reply text). A silence made on the
incident's page is then listed on the Silences page with what it mutes. Screenshots of each page are
written to the test's tmp_path.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from support import ServiceProcess, consume, free_port, wait_for
from test_console_browser import _browser, _submit, pytestmark  # noqa: F401  (the same skip without Chromium)

from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.timeutil import now_ts, ts_from_epoch
from services.common.topics import all_topic_specs
from services.console.config import DEFAULT_REPLIES_FILE
from services.console.replies import ReplyBook, fill_reply

BURST = 200
LANGUAGES = ("en", "es", "de", "fr", "pt", "it", "ru", "el")
SMALL = 12  # the second incident's posts: marked all responded from its page
STATUS_PAGE = "https://status.nordwave.example/incidents/42"


def _posts(incident: pb.Incident, tag: str, first: int, count: int, now: float,
           ours: bool = True) -> list[tuple[str, str, bytes]]:
    records = []
    for k in range(first, first + count):
        mid = f"x:{tag}-{k}"
        m = pb.Mention(source=pb.SOURCE_X, external_id=mid[2:], mention_id=mid, brands=["nordwave" if ours else "acme"],
                       text=f"@FjordTel app down again #{k}" if ours else f"@acme where is my parcel #{k}",
                       url=f"https://x.com/u{k}/status/{mid[2:]}", created_at=ts_from_epoch(now - 600 + 2 * k),
                       author=pb.Author(handle=f"user{k}", follower_count=50 + k))
        s = pb.ScoredMention(mention=m, language=LANGUAGES[k % len(LANGUAGES)] if ours else "en",
                             priority=pb.P1 if ours else pb.P2, incident_id=incident.id if ours else "",
                             reasons=["outage report 0.9"] if ours else ["complaint 0.8"],
                             sentiment=pb.SentimentScore(label=pb.NEGATIVE), model_version="e2e")
        s.intents["outage_report" if ours else "complaint"] = 0.9
        routed = pb.RoutedMention(scored=s, queue="urgent", route="root/p1", receiver="urgent", routed_at=now_ts(),
                                  respond_by=ts_from_epoch(now + 1800))
        records.append((topics.queue_topic("urgent"), mid, codec.encode(routed)))
    return records


def _incident(incident_id: str, posts: int, now: float) -> pb.Incident:
    inc = pb.Incident(id=incident_id, brand="nordwave", kind=pb.OUTAGE_CLUSTER, state=pb.OPEN, severity=0.95,
                      opened_at=ts_from_epoch(now - 600), updated_at=ts_from_epoch(now - 10), mention_count=posts,
                      reasons=[f"{posts} outage reports in 10 min (baseline 0.3)"])
    inc.evidence.languages.update({lang: posts // len(LANGUAGES) for lang in LANGUAGES})
    return inc


async def _produce_burst(bootstrap: str, tag: str) -> tuple[pb.Incident, pb.Incident]:
    """The burst (posts 0..BURST-1), the smaller incident (the next SMALL) and three unrelated posts."""
    now = time.time()
    burst, small = _incident(f"inc-{tag}", BURST, now), _incident(f"inc-{tag}-small", SMALL, now)
    records = [*_posts(burst, tag, 0, BURST, now), *_posts(small, tag, BURST, SMALL, now),
               *_posts(burst, tag, BURST + SMALL, 3, now, ours=False)]
    records += [(topics.INCIDENTS, inc.id, codec.encode(inc)) for inc in (burst, small)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(t, v, key=k.encode()) for t, k, v in records])
    finally:
        await producer.stop()
    return burst, small


async def test_outage_burst_replied_to_all_marked_all_responded_and_silenced(kafka_bootstrap: str,
                                                                             tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    burst, small = await _produce_burst(kafka_bootstrap, tag)
    incident_id = burst.id
    burst_ids = [f"x:{tag}-{k}" for k in range(BURST)]
    small_ids = [f"x:{tag}-{k}" for k in range(BURST, BURST + SMALL)]
    other_ids = [f"x:{tag}-{k}" for k in range(BURST + SMALL, BURST + SMALL + 3)]
    port = free_port()
    console = ServiceProcess("console", {"TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "TRIAGE_CONSOLE_PORT": str(port),
                                         "TRIAGE_CONSOLE_GROUP_ID": f"e2e-outage-{tag}",
                                         "TRIAGE_CONSOLE_POLL_SECONDS": "60"}, tmp_path)
    base = f"http://127.0.0.1:{port}"
    browser = None
    try:
        async def burst_read() -> bool:
            assert console.alive(), console.log_tail()
            try:
                async with httpx.AsyncClient(timeout=3) as client:
                    data = (await client.get(f"{base}/api/queues/urgent", params={"q": f"x:{tag}-"})).json()
            except (httpx.HTTPError, ValueError):
                return False
            return data.get("total") == BURST + SMALL + 3

        await wait_for(burst_read, timeout=90, what=f"the console to read the {BURST + SMALL + 3} posts from Kafka")
        browser = await asyncio.to_thread(_browser)

        def reply_to_all() -> None:
            browser.get(base + "/queues/urgent")
            group = browser.find_element(By.CSS_SELECTOR, f'div.group[data-incident="{incident_id}"]')
            assert f"{BURST} open items" in group.text
            per_language = BURST // len(LANGUAGES)
            assert all(f"{lang} {per_language}" in group.text for lang in LANGUAGES), group.text
            # The burst is one card, not two hundred: only the unrelated posts have cards of their own (they may
            # be on the queue's later pages when older runs left items in the shared broker).
            assert not browser.find_elements(By.CSS_SELECTOR, f'div.item[data-mention="{burst_ids[0]}"]')
            browser.save_screenshot(str(tmp_path / "01-queue-grouped.png"))

            form = browser.find_element(By.CSS_SELECTOR, "form.filters")
            Select(form.find_element(By.NAME, "incident")).select_by_value(incident_id)
            _submit(browser, form.find_element(By.CSS_SELECTOR, "button.filter"))
            assert f"incident={incident_id}" in browser.current_url
            head = browser.find_element(By.TAG_NAME, "h1").find_element(By.XPATH, "following-sibling::p").text
            assert head.startswith(f"{BURST} open of "), head
            cards = browser.find_elements(By.CSS_SELECTOR, "div.item")
            assert cards and all(c.get_attribute("data-mention") in burst_ids for c in cards)
            browser.save_screenshot(str(tmp_path / "02-queue-filtered-to-incident.png"))

            group = browser.find_element(By.CSS_SELECTOR, f'div.group[data-incident="{incident_id}"]')
            group.find_element(By.CSS_SELECTOR, "details.reply-all summary").click()
            reply = group.find_element(By.CSS_SELECTOR, "details.reply-all form")
            boxes = reply.find_elements(By.CSS_SELECTOR, "textarea.status-update")
            assert sorted(b.get_attribute("name") for b in boxes) == sorted(f"reply_{lang}" for lang in LANGUAGES)
            reply.find_element(By.NAME, "status_page").send_keys(STATUS_PAGE)
            browser.save_screenshot(str(tmp_path / "03-reply-to-all-form.png"))
            _submit(browser, reply.find_element(By.CSS_SELECTOR, "button.reply-all"))
            assert f"incident={incident_id}" in browser.current_url
            assert "Nothing waiting that matches." in browser.find_element(By.ID, "live").text
            browser.save_screenshot(str(tmp_path / "04-incident-all-replied.png"))
            browser.get(base + "/queues/urgent")
            assert not browser.find_elements(By.CSS_SELECTOR, f'div.group[data-incident="{incident_id}"]')
            assert browser.find_elements(By.CSS_SELECTOR, f'div.group[data-incident="{small.id}"]')  # untouched

        def mark_all_responded() -> None:
            browser.get(f"{base}/incidents/{small.id}")
            assert f"Open items of this incident ({SMALL})" in browser.find_element(By.ID, "live").text
            group = browser.find_element(By.CSS_SELECTOR, f'div.group[data-incident="{small.id}"]')
            _submit(browser, group.find_element(By.CSS_SELECTOR, "button.all-responded"))
            assert browser.current_url.endswith(f"/incidents/{small.id}")
            assert "Open items of this incident (0)" in browser.find_element(By.ID, "live").text
            browser.save_screenshot(str(tmp_path / "05-small-incident-all-responded.png"))

        await asyncio.to_thread(reply_to_all)
        await asyncio.to_thread(mark_all_responded)

        async def all_responses() -> list[pb.ResponseEvent] | None:
            recs = await consume(kafka_bootstrap, [topics.RESPONSES], idle=1.0, timeout=10)
            mine = [e for e in (codec.decode(v, pb.ResponseEvent) for t, _, v in recs if v)
                    if e.mention_id.startswith(f"x:{tag}-")]
            return mine if len(mine) >= BURST + SMALL else None

        events = await wait_for(all_responses, timeout=60, what=f"{BURST + SMALL} ResponseEvents on Kafka")
        per_item = Counter(e.mention_id for e in events)
        assert sorted(per_item) == sorted(burst_ids + small_ids), "one ResponseEvent per item of both incidents"
        assert set(per_item.values()) == {1}, "and each exactly once"
        assert {e.kind for e in events} == {pb.RESPONDED} and {e.queue for e in events} == {"urgent"}
        replies = ReplyBook.load(DEFAULT_REPLIES_FILE)
        by_id = {e.mention_id: e for e in events}
        for k, mid in enumerate(burst_ids):
            expected = fill_reply(replies.status_update(LANGUAGES[k % len(LANGUAGES)], "nordwave"), f"user{k}",
                                  STATUS_PAGE)
            assert by_id[mid].reply == expected, (mid, by_id[mid].reply)  # its language, its author, the link
        assert all(by_id[mid].reply == "" for mid in small_ids)  # marked responded: no reply text

        def silence_and_list() -> None:
            browser.get(f"{base}/incidents/{incident_id}")
            form = browser.find_element(By.CSS_SELECTOR, "form.silence")
            browser.find_element(By.XPATH, "//summary[text()='new silence']").click()
            form.find_element(By.NAME, "created_by").send_keys("ana")
            form.find_element(By.NAME, "comment").send_keys("status page is up, on it")
            _submit(browser, form.find_element(By.CSS_SELECTOR, "button.silence"))
            deadline = time.monotonic() + 30
            while True:
                browser.get(base + "/silences?state=active")
                rows = browser.find_elements(By.CSS_SELECTOR, "table.silences tr.silence")
                row = next((r for r in rows if incident_id in r.text), None)
                if row is not None:
                    break
                assert time.monotonic() < deadline, "the silence never appeared on the Silences page"
                time.sleep(0.5)
            assert "ana" in row.text and "status page is up, on it" in row.text and "active" in row.text
            assert f'incident="{incident_id}"' in row.find_element(By.CSS_SELECTOR, "td").text
            mutes = row.find_element(By.CSS_SELECTOR, "td.mutes")
            assert mutes.find_element(By.LINK_TEXT, incident_id)  # the incident whose pages it holds back
            browser.save_screenshot(str(tmp_path / "06-silences.png"))

        await asyncio.to_thread(silence_and_list)
        for name in ("01-queue-grouped", "02-queue-filtered-to-incident", "03-reply-to-all-form",
                     "04-incident-all-replied", "05-small-incident-all-responded", "06-silences"):
            assert (tmp_path / f"{name}.png").stat().st_size > 5000, name
        assert not any(e.mention_id in other_ids for e in events)  # the unrelated posts were not answered
    finally:
        if browser is not None:
            await asyncio.to_thread(browser.quit)
        console.stop()
