"""`triage feedback export` and `make eval`'s loader read the console's corrections from the real broker."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from services.classify.training import feedback_set
from services.common import codec, topics
from services.common.codec import pb
from services.common.kafka import ensure_topics
from services.common.topics import all_topic_specs


async def test_export_then_eval_loader_see_the_latest_correction_per_mention(kafka_bootstrap: str,
                                                                             tmp_path: Path) -> None:
    await ensure_topics(kafka_bootstrap, all_topic_specs())
    tag = uuid.uuid4().hex[:8]
    sent = [pb.LabelFeedback(mention_id=f"x:{tag}-1", text="app down again", original_intent="complaint",
                             corrected_intent="question"),
            pb.LabelFeedback(mention_id=f"x:{tag}-2", text="love it", original_intent="praise",
                             corrected_priority=pb.P4),
            pb.LabelFeedback(mention_id=f"x:{tag}-1", text="app down again", original_intent="complaint",
                             corrected_intent="outage_report")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for fb in sent:
            await producer.send_and_wait(topics.FEEDBACK, codec.encode(fb), key=fb.mention_id.encode())
    finally:
        await producer.stop()

    out = tmp_path / "feedback.jsonl"
    rc = await asyncio.to_thread(feedback_set.main, ["export", "--out", str(out), "--bootstrap", kafka_bootstrap])
    assert rc == 0
    exported = [e for e in feedback_set.examples(feedback_set.read_jsonl(out)) if tag in e.mention_id]
    assert [(e.mention_id, e.intent, e.flagged_intent) for e in exported] == [
        (f"x:{tag}-2", "praise", "praise"), (f"x:{tag}-1", "outage_report", "complaint")]

    live, source = await asyncio.to_thread(feedback_set.load_for_eval, "", kafka_bootstrap, 20.0)
    assert source.startswith("topic feedback")
    assert [(e.mention_id, e.intent) for e in live if tag in e.mention_id] == [
        (f"x:{tag}-2", "praise"), (f"x:{tag}-1", "outage_report")]
