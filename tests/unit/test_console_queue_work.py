"""Working a long queue: filters, search, counts per filter, paging and incident groups (views.py, no Kafka),
and the same parameters on the queue page and the JSON API."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_console_app import RecordingService
from test_console_views import T0, q, routed

from services.common import topics
from services.common.codec import pb
from services.console.app import build_app
from services.console.views import (
    ConsoleView,
    IncidentGroup,
    QueueFilter,
    facet_counts,
    filter_items,
    group_by_incident,
    paginate,
)


def _outage_view(n: int = 12) -> ConsoleView:
    """`n` posts of incident inc-9 in en/es/de, two unrelated ones, one of them overdue."""
    v = ConsoleView()
    langs = ["en", "es", "de"]
    for k in range(n):
        v.apply_record(q("urgent"), f"x:o{k}".encode(), routed(f"o{k}", pb.P1, created=T0 + k, incident="inc-9",
                                                               intent="outage_report", lang=langs[k % 3]))
    v.apply_record(q("urgent"), b"x:c1", routed("c1", pb.P2, intent="complaint", respond_by=T0 + 10))
    v.apply_record(q("urgent"), b"x:c2", routed("c2", pb.P3, intent="question", lang="fr"))
    return v


def test_filters_combine_and_counts_are_per_other_filters() -> None:
    items = _outage_view().queue_items("urgent")
    now = T0 + 60
    assert len(filter_items(items, QueueFilter(incident="inc-9"), now)) == 12
    assert [i.mention_id for i in filter_items(items, QueueFilter(incident="inc-9", language="de"), now)] == \
        ["x:o2", "x:o5", "x:o8", "x:o11"]
    assert [i.mention_id for i in filter_items(items, QueueFilter(breached=True), now)] == ["x:c1"]
    assert [i.mention_id for i in filter_items(items, QueueFilter(search="TEXT C2"), now)] == ["x:c2"]
    assert filter_items(items, QueueFilter(priority="P2", intent="question"), now) == []
    counts = facet_counts(items, QueueFilter(language="de"), now)
    # language counts ignore the language filter (choosing "en" would show 4), the others respect it.
    assert counts["language"] == {"en": 5, "de": 4, "es": 4, "fr": 1}  # c1 is in English too
    assert counts["incident"] == {"inc-9": 4} and counts["priority"] == {"P1": 4}
    assert counts["breached"] == {"1": 0}
    assert facet_counts(items, QueueFilter(), now)["breached"] == {"1": 1}


def test_filter_from_query_and_back() -> None:
    flt = QueueFilter.from_query({"brand": "acme", "breached": "1", "q": " down ", "page": "3"})
    assert flt == QueueFilter(brand="acme", breached=True, search="down") and flt.active
    assert flt.params(page="2") == {"brand": "acme", "breached": "1", "q": "down", "page": "2"}
    assert flt.params(brand="") == {"breached": "1", "q": "down"}
    assert not QueueFilter.from_query({}).active
    with pytest.raises(ValueError, match="priority must be"):
        QueueFilter.from_query({"priority": "P9"})
    with pytest.raises(ValueError, match="breached"):
        QueueFilter.from_query({"breached": "maybe"})


def test_paging_clamps_to_the_list() -> None:
    entries = list(range(23))
    p = paginate(entries, 2, 10)
    assert p.entries == list(range(10, 20)) and (p.number, p.pages, p.total) == (2, 3, 23)
    assert p.has_previous and p.has_next
    assert paginate(entries, 99, 10).entries == [20, 21, 22]
    assert paginate([], 1, 10).pages == 1 and not paginate([], 1, 10).has_next


def test_an_incidents_items_are_one_group_where_its_first_item_stood() -> None:
    items = _outage_view().queue_items("urgent")
    entries = group_by_incident(items, min_size=10)
    assert len(entries) == 3 and isinstance(entries[0], IncidentGroup)
    group = entries[0]
    assert group.count == 12 and group.languages == {"de": 4, "en": 4, "es": 4} and group.brand == "acme"
    assert [i.mention_id for i in group.newest()] == ["x:o11", "x:o10", "x:o9"]
    assert [getattr(e, "mention_id", None) for e in entries[1:]] == ["x:c1", "x:c2"]
    assert all(not isinstance(e, IncidentGroup) for e in group_by_incident(items, min_size=13))


async def test_queue_page_and_api_take_the_same_filters() -> None:
    svc = RecordingService(_outage_view(), console_page_size=2)
    async with TestClient(TestServer(build_app(svc.settings, svc))) as client:
        html = await (await client.get("/queues/urgent")).text()
        # One group for the outage (12 cards would be one card each), then the other two items, 2 per page.
        assert html.count('class="group"') == 1 and "12 open items" in html and html.count('class="item') == 1
        assert 'rel="next" href="/queues/urgent?page=2"' in html and "page 1 of 2" in html
        assert '<option value="inc-9">inc-9 (12)</option>' in html
        html = await (await client.get("/queues/urgent?incident=inc-9&language=es&page=2")).text()
        assert html.count('class="item') == 2 and "page 2 of 2" in html and "4 open of 14 match" in html
        assert 'rel="prev" href="/queues/urgent?language=es&amp;incident=inc-9&amp;page=1"' in html
        html = await (await client.get("/queues/urgent?q=nothing-like-this")).text()
        assert "Nothing waiting that matches." in html
        assert (await client.get("/queues/urgent?priority=P7")).status == 400
        assert (await client.get("/queues/urgent?page=0")).status == 400

        api = await (await client.get("/api/queues/urgent?incident=inc-9&per_page=5&page=3")).json()
        assert api["total"] == 12 and api["pages"] == 3 and [i["mention_id"] for i in api["items"]] == \
            ["x:o10", "x:o11"]
        assert api["counts"]["language"] == {"de": 4, "en": 4, "es": 4}
        assert api["incidents"][0]["incident_id"] == "inc-9" and api["incidents"][0]["count"] == 12
        api = await (await client.get("/api/queues/urgent?breached=1")).json()
        assert [i["mention_id"] for i in api["items"]] == ["x:c1"]
        r = await client.get("/api/queues/urgent?priority=P7")
        assert r.status == 400 and "priority" in (await r.json())["error"]
        assert topics.queue_topic("urgent")  # the queue exists under its topic name
