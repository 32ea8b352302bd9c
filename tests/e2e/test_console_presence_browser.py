"""Two responders on two console replicas in two real browsers (Debian's headless Chromium via selenium), on the
real broker: the collision an outage invites.

Ana signs in on replica a, Bo on replica b; both open the queue filtered to one incident. Bo starts a
correction on the first item (his page is then not reloaded under him) while Ana claims it: within a few
seconds Bo's page, still open, says "also viewing: ana" on that card (the presence heartbeats on
`triage.console.presence`, folded by replica b and fetched by console.js). Bo's stale "claim" is refused
with the reason ("ana is on it"); reloaded, his card shows Ana's claim and offers no claim. Ana's page in
turn shows Bo viewing, and on the incident's page each sees the other. Screenshots under tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

import httpx
from support import ServiceProcess, free_port, wait_for
from test_console_browser import _browser, _produce, _submit, pytestmark  # noqa: F401  (the same skip)

from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs

ANA_TOKEN, BO_TOKEN = "ana-e2e-token-0123456789", "bo-e2e-token-0123456789a"
TOKENS = json.dumps([{"name": "ana", "token": ANA_TOKEN}, {"name": "bo", "token": BO_TOKEN}])
FEW_SECONDS = 15.0  # "within a few seconds", with room for a loaded CI machine
T = TypeVar("T")


def _unstale(look: Callable[[], T], timeout: float = FEW_SECONDS) -> T:
    """`look` (find elements, read or click them) again while it meets a stale element: console.js replaces the
    live part of a page that is not busy every poll (2 s here), so an element found a moment ago can be gone by the
    time it is read or clicked (a CI dry run: Ana's claim button). Nothing acted when that is raised."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            return look()
        except StaleElementReferenceException:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)


def _sign_in(browser, base: str, token: str, next_path: str) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    browser.get(f"{base}/login?next={quote(next_path, safe='')}")
    browser.find_element(By.NAME, "token").send_keys(token)
    _submit(browser, browser.find_element(By.CSS_SELECTOR, 'form[action="/login"] button'))


def _api_claim_holder(browser, path: str, mention_id: str) -> str:  # type: ignore[no-untyped-def]
    """The holder replica b's API reports, fetched from the open page (which stays as it is)."""
    return str(browser.execute_async_script(
        "var path = arguments[0], mid = arguments[1], done = arguments[arguments.length - 1];"
        "fetch(path, {credentials: 'same-origin'}).then(function (r) { return r.json(); })"
        ".then(function (d) { var it = d.items.filter(function (i) { return i.mention_id === mid; })[0];"
        "done(it && it.claim ? it.claim.holder : ''); }).catch(function () { done(''); });", path, mention_id))


async def test_two_responders_see_each_others_claim_and_presence(kafka_bootstrap: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    incident_id, mention_ids = await _produce(kafka_bootstrap, tag)
    first = mention_ids[0]
    consoles, bases = [], []
    for replica in ("a", "b"):
        port = free_port()
        (tmp_path / replica).mkdir()
        consoles.append(ServiceProcess("console", {
            "TRIAGE_KAFKA_BOOTSTRAP": kafka_bootstrap, "TRIAGE_CONSOLE_PORT": str(port),
            "TRIAGE_CONSOLE_GROUP_ID": f"e2e-presence-{tag}-{replica}", "TRIAGE_CONSOLE_TOKENS": TOKENS,
            "TRIAGE_INSECURE_DEV": "0", "TRIAGE_CONSOLE_POLL_SECONDS": "2",
            "TRIAGE_CONSOLE_PRESENCE_EXPIRY_SECONDS": "30"}, tmp_path / replica))
        bases.append(f"http://127.0.0.1:{port}")
    base_a, base_b = bases
    queue_path = f"/queues/urgent?incident={incident_id}"
    ana = bo = None
    try:
        for console, base in zip(consoles, bases, strict=True):
            async def ready(console: ServiceProcess = console, base: str = base) -> bool:
                assert console.alive(), console.log_tail()
                try:
                    async with httpx.AsyncClient(timeout=3) as client:
                        return (await client.get(f"{base}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(ready, timeout=90, what=f"console {base} to read the topics")
        ana, bo = await asyncio.gather(asyncio.to_thread(_browser), asyncio.to_thread(_browser))

        def card(browser, mention_id: str):  # type: ignore[no-untyped-def]
            return browser.find_element(By.CSS_SELECTOR, f'div.item[data-mention="{mention_id}"]')

        def presence_of(browser, target: str) -> str:  # type: ignore[no-untyped-def]
            def look() -> str:
                found = browser.find_elements(By.CSS_SELECTOR, f'.presence[data-presence="{target}"]')
                return str(found[0].text) if found else ""
            return _unstale(look)

        def collide() -> None:
            deadline = time.monotonic() + 60
            _sign_in(ana, base_a, ANA_TOKEN, queue_path)
            _sign_in(bo, base_b, BO_TOKEN, queue_path)
            for browser, base in ((ana, base_a), (bo, base_b)):
                while not browser.find_elements(By.CSS_SELECTOR, f'div.item[data-mention="{first}"]'):
                    assert time.monotonic() < deadline, f"{base} never showed the item"
                    time.sleep(0.5)
                    browser.get(base + queue_path)
            # Bo opens a correction on the item: his page is not refreshed under him from now on.
            _unstale(lambda: card(bo, first).find_element(By.XPATH, ".//summary[text()='wrong priority / intent']")
                     .click())
            assert "claim" in card(bo, first).find_element(By.CSS_SELECTOR, "button.claim").text

            _unstale(lambda: _submit(ana, card(ana, first).find_element(By.CSS_SELECTOR, "button.claim")))
            assert "you are on it, 0 min" in _unstale(lambda: card(ana, first).text)

            # Bo's open page (not reloaded) shows Ana looking at the item within a few seconds, never himself.
            target = f"item:{first}"
            WebDriverWait(bo, FEW_SECONDS).until(lambda b: "also viewing: ana" in presence_of(b, target))
            assert "bo" not in presence_of(bo, target)
            assert card(bo, first).find_elements(By.CSS_SELECTOR, "details[open]"), "the page was not replaced"
            bo.save_screenshot(str(tmp_path / "01-bo-sees-ana-viewing.png"))

            # Replica b has folded Ana's claim: Bo's stale "claim" button is refused, with the reason.
            api = f"/api/queues/urgent?incident={incident_id}"
            WebDriverWait(bo, FEW_SECONDS).until(lambda b: _api_claim_holder(b, api, first) == "ana")
            _submit(bo, card(bo, first).find_element(By.CSS_SELECTOR, "button.claim"))
            assert bo.find_element(By.TAG_NAME, "h1").text == "409"
            assert "ana is on it" in bo.find_element(By.ID, "error").text
            bo.save_screenshot(str(tmp_path / "02-bo-claim-refused.png"))

            bo.get(base_b + queue_path)
            # Bo's reloaded page is not busy: console.js may replace its live part between two looks.
            assert "ana is on it, 0 min" in _unstale(lambda: card(bo, first).text)
            assert not _unstale(lambda: card(bo, first).find_elements(By.CSS_SELECTOR, "button.claim"))
            assert "also viewing: ana" in presence_of(bo, target)
            bo.save_screenshot(str(tmp_path / "03-bo-sees-ana-claim.png"))

            # Ana's page refreshes itself (console.js): Bo is viewing her item.
            WebDriverWait(ana, FEW_SECONDS).until(lambda a: "also viewing: bo" in presence_of(a, target))
            assert "ana" not in presence_of(ana, target)
            ana.save_screenshot(str(tmp_path / "04-ana-sees-bo-viewing.png"))

            ana.get(f"{base_a}/incidents/{incident_id}")
            bo.get(f"{base_b}/incidents/{incident_id}")
            heading = f"incident:{incident_id}"
            WebDriverWait(bo, FEW_SECONDS).until(lambda b: "also viewing: ana" in presence_of(b, heading))
            WebDriverWait(ana, FEW_SECONDS).until(lambda a: "also viewing: bo" in presence_of(a, heading))
            bo.save_screenshot(str(tmp_path / "05-incident-page-presence.png"))

        await asyncio.to_thread(collide)
        for name in ("01-bo-sees-ana-viewing", "02-bo-claim-refused", "03-bo-sees-ana-claim",
                     "04-ana-sees-bo-viewing", "05-incident-page-presence"):
            assert (tmp_path / f"{name}.png").stat().st_size > 5000, name
    finally:
        for browser in (ana, bo):
            if browser is not None:
                await asyncio.to_thread(browser.quit)
        for console in consoles:
            console.stop()
