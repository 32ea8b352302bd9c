"""`make profile` (bench/profile.py): py-spy samples are attributed to the part of the scoring path a user
would name (model forward, tokeniser, language ID, heads, protobuf, start-up), and the top self-time
functions outside the model are the leaves of the other samples."""

from __future__ import annotations

from bench.profile import part_of, summarise


def frame(name: str, file: str) -> dict[str, object]:
    return {"name": name, "file": file, "line": 1, "col": None}


SITE = "/venv/lib/python3.11/site-packages"
FRAMES = [
    frame("main", "/repo/services/classify/score_file.py"),               # 0
    frame("stream_texts", "/repo/services/classify/scorer.py"),            # 1
    frame("embed_ids", "/repo/services/classify/encoder/loader.py"),      # 2
    frame("forward", f"{SITE}/transformers/models/bert/modeling_bert.py"),  # 3
    frame("_ids", "/repo/services/classify/encoder/loader.py"),           # 4
    frame("detect", "/repo/services/classify/langid.py"),                 # 5
    frame("predict_proba", "/repo/services/classify/heads.py"),           # 6
    frame("dumps", "/usr/lib/python3.11/json/__init__.py"),               # 7
    frame("build_scorer", "/repo/services/classify/factory.py"),          # 8
    frame("SerializeToString", f"{SITE}/google/protobuf/message.py"),     # 9
    frame("_worker", "/usr/lib/python3.11/concurrent/futures/thread.py"),  # 10
    frame("__call__", f"{SITE}/transformers/tokenization_utils_base.py"),  # 11
]


def test_samples_are_attributed_by_their_stack_and_start_up_is_kept_apart() -> None:
    profile = {"shared": {"frames": FRAMES}, "profiles": [
        {"samples": [[10, 2, 3]] * 6 + [[10, 2]] + [[10]] * 3, "weights": [0.01] * 10},     # model thread
        {"samples": [[0, 1, 4], [0, 1, 4, 11], [0, 1, 5], [0, 1, 6], [0, 7], [0, 8, 2, 3], [9]],  # the rest
         "weights": [0.01] * 7},
    ]}
    out = summarise(profile)
    assert out["seconds"] == 0.17 and out["startup_seconds"] == 0.01
    steady = out["steady_shares"]
    assert steady["model forward"] == round(6 / 13, 4) and steady["tokeniser"] == round(2 / 13, 4)
    assert steady["encoder glue"] == steady["language ID"] == steady["heads"] == steady["protobuf"] == round(1 / 13, 4)
    assert steady["other"] == round(1 / 13, 4)                 # json.dumps of the output
    assert out["shares"]["start-up"] == round(1 / 17, 4)        # a warm-up forward inside build_scorer
    assert out["shares"]["waiting"] == round(3 / 17, 4)         # the pool thread between batches
    top = dict(out["top_self_outside_model"])
    assert top["_ids (/repo/services/classify/encoder/loader.py) [tokeniser]"] == round(1 / 13, 4)
    assert top[f"__call__ ({SITE}/transformers/tokenization_utils_base.py) [tokeniser]"] == round(1 / 13, 4)
    assert not [name for name in top if "modeling_bert" in name or "build_scorer" in name or "_worker" in name]


def test_a_forward_pass_inside_the_tokeniser_stage_is_still_the_model() -> None:
    assert part_of(["main (score_file.py)", f"forward ({SITE}/torch/nn/modules/linear.py)"]) == "model forward"
    assert part_of(["main (x.py)", f"run ({SITE}/onnxruntime/capi/onnxruntime_inference_collection.py)"]) \
        == "model forward"
    assert part_of(["main (x.py)"]) == "other"


def test_a_worker_profile_in_py_spy_raw_form_is_split_into_the_workers_parts_and_idle() -> None:
    from bench.profile import summarise_folded

    t = "thread (7)"
    lines = [
        f"{t};<module> (services/classify/__main__.py:3);run (asyncio/base_events.py:1);"
        "select (selectors.py:468);0x7f1 (libc.so.6) 50",                                      # the loop, idle
        f"{t};_worker (concurrent/futures/thread.py:83);embed_ids (services/classify/encoder/loader.py:200);"
        "forward (torch/nn/modules/linear.py:125) 30",                                           # the model
        f"{t};_run_once (asyncio/base_events.py:1);getone (aiokafka/consumer/consumer.py:1);"
        "_fetch (aiokafka/consumer/fetcher.py:9) 8",                                             # Kafka
        # the innermost part named wins: the crisis engine, not the Faust agent or event loop around it
        f"{t};_run_once (asyncio/base_events.py:1);_slurp (faust/agents/agent.py:2);"
        "on_scored (services/classify/crisis_agent.py:5);observe (services/classify/crisis/engine.py:1) 4",
        f"{t};encode (services/common/codec.py:40);SerializeToString (google/protobuf/message.py:1) 4",
        f"{t};detect (services/classify/langid.py:10) 2",
        f"{t};score (services/classify/pipeline.py:77) 2",
        "not a sample line",
    ]
    out = summarise_folded(lines, rate=10)
    assert out["seconds"] == 10.0 and out["busy_seconds"] == 5.0
    shares = out["busy_shares"]
    assert shares["model forward"] == 0.6 and shares["Kafka client and Faust"] == 0.16
    assert shares["crisis engine"] == shares["protobuf"] == 0.08 and shares["language ID"] == shares["other"] == 0.04
    assert "idle" not in shares
    top = dict(out["top_self_outside_model"])
    assert top["_fetch (/aiokafka/consumer/fetcher.py) [Kafka client and Faust]"] == 0.16
    assert not [name for name in top if "linear.py" in name or "selectors" in name]
