"""The page requests a router replica sends to a group's owner (`triage.router.page-requests`), and the
one-mention group of an SLA escalation: typed values, encoded once (grouping.py)."""

from __future__ import annotations

import json

import pytest

from services.common.codec import pb
from services.router.grouping import Group, IncidentGrouper, PageRequest, Sample
from services.router.sla import SlaItem

T0 = 1_800_000_000.0


def _request(**kw: object) -> PageRequest:
    fields: dict = dict(key="pd|incident:inc-1", receiver="pd", route="root/0", incident_id="inc-1",
                        group_by=["brand"], labels={"brand": "acme", "language": "de"}, priority="P1",
                        reasons=["outage report 0.93"], sample=Sample("x:1", "App kaputt", "https://x.com/1", "de"),
                        now=T0, group_wait=30.0, group_interval=300.0, repeat_interval=14400.0, quiet_period=900.0)
    fields.update(kw)
    return PageRequest(**fields)


def test_a_request_survives_the_topic_and_counts_into_its_group() -> None:
    request = _request()
    assert PageRequest.decode(request.encode()) == request
    grouper = IncidentGrouper()
    g = grouper.add_request(PageRequest.decode(request.encode()))
    assert g is not None and g.key == request.key and g.count == 1 and g.languages == {"de": 1}
    assert g.samples == [{"mention_id": "x:1", "text": "App kaputt", "url": "https://x.com/1", "language": "de"}]


def test_a_request_written_by_the_previous_version_is_read() -> None:
    """Requests still on the topic during a rolling upgrade: the 14-key JSON object, numbers as JSON ints."""
    old = {"key": "pd|incident:inc-1", "receiver": "pd", "route": "root/0", "incident_id": "inc-1",
           "group_by": ["brand"], "labels": {"brand": "acme", "language": "de"}, "priority": "P1",
           "reasons": ["outage report 0.93"], "sample": {"mention_id": "x:1", "text": "App kaputt",
                                                         "url": "https://x.com/1", "language": "de"},
           "now": int(T0), "group_wait": 30, "group_interval": 300, "repeat_interval": 14400, "quiet_period": 900}
    request = PageRequest.decode(json.dumps(old).encode())
    assert request == _request() and isinstance(request.now, float) and isinstance(request.group_wait, float)
    assert json.loads(request.encode()) == {**old, "now": T0, "group_wait": 30.0, "group_interval": 300.0,
                                            "repeat_interval": 14400.0, "quiet_period": 900.0}


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"key": "k"}',
                                  json.dumps({**json.loads(_request().encode()), "now": "soon"}).encode()])
def test_what_is_no_page_request_is_refused(body: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        PageRequest.decode(body)


def test_an_sla_breach_pages_as_a_one_mention_group() -> None:
    scored = pb.ScoredMention(language="en", reasons=["complaint 0.8"])
    scored.mention.mention_id, scored.mention.text, scored.mention.url = "x:9", "still waiting", "https://x.com/9"
    scored.mention.brands.append("acme")
    item = SlaItem("x:9", "urgent", "P2", "root/1", T0, T0 + 3600, escalate_to="oncall")
    g = Group.for_sla_breach(item, scored)
    assert (g.key, g.id, g.receiver, g.route, g.incident_id) == ("sla|x:9", "sla-x:9", "oncall", "root/1", "")
    assert g.labels == {"brand": "acme"} and g.priority == "P2" and g.count == 1
    assert g.reasons == {"no first response within the P2 SLA": 1, "complaint 0.8": 1}
    assert g.samples == [{"mention_id": "x:9", "text": "still waiting", "url": "https://x.com/9", "language": "en"}]
    assert g.first_at == g.last_at == T0 and g.group_wait == 0
    assert Group.from_json(g.to_json()) == g
