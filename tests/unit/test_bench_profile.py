"""`make profile` (bench/profile.py): py-spy samples are attributed to the part of the scoring path a user
would name (model forward, tokeniser, language ID, heads, protobuf, start-up), and the top self-time
functions outside the model are the leaves of the other samples."""

from __future__ import annotations

from bench.profile import part_of, summarise


def frame(name: str, file: str) -> dict[str, object]:
    return {"name": name, "file": file, "line": 1, "col": None}


FRAMES = [
    frame("main", "services/classify/score_file.py"),               # 0
    frame("stream_texts", "services/classify/scorer.py"),            # 1
    frame("embed_ids", "services/classify/encoder/loader.py"),      # 2
    frame("forward", "transformers/models/bert/modeling_bert.py"),  # 3
    frame("_ids", "services/classify/encoder/loader.py"),           # 4
    frame("detect", "services/classify/langid.py"),                 # 5
    frame("predict_proba", "services/classify/heads.py"),           # 6
    frame("dumps", "json/__init__.py"),                             # 7
    frame("build_scorer", "services/classify/factory.py"),          # 8
    frame("SerializeToString", "google/protobuf/message.py"),       # 9
]


def test_samples_are_attributed_by_their_stack_and_start_up_is_kept_apart() -> None:
    profile = {"shared": {"frames": FRAMES}, "profiles": [
        {"samples": [[0, 1, 2, 3]] * 6 + [[0, 1, 2]] + [[0, 1, 4]] * 2, "weights": [0.01] * 9},   # model thread
        {"samples": [[0, 1, 5], [0, 1, 6], [0, 7], [0, 8, 2, 3], [9]], "weights": [0.01] * 5},     # the rest
    ]}
    out = summarise(profile)
    assert out["seconds"] == 0.14 and out["startup_seconds"] == 0.01
    steady = out["steady_shares"]
    assert steady["model forward"] == round(6 / 13, 4) and steady["tokeniser"] == round(2 / 13, 4)
    assert steady["encoder glue"] == steady["language ID"] == steady["heads"] == steady["protobuf"] == round(1 / 13, 4)
    assert steady["other"] == round(1 / 13, 4)                 # json.dumps of the output
    assert out["shares"]["start-up"] == round(1 / 14, 4)        # a warm-up forward inside build_scorer
    top = dict(out["top_self_outside_model"])
    assert top["_ids (services/classify/encoder/loader.py) [tokeniser]"] == round(2 / 13, 4)
    assert not [name for name in top if "modeling_bert" in name or "build_scorer" in name]


def test_a_forward_pass_inside_the_tokeniser_stage_is_still_the_model() -> None:
    assert part_of(["main (score_file.py)", "forward (torch/nn/modules/linear.py)"]) == "model forward"
    assert part_of(["main (x.py)", "run (onnxruntime/capi/onnxruntime_inference_collection.py)"]) == "model forward"
    assert part_of(["main (x.py)"]) == "other"
