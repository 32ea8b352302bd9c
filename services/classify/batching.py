"""How the classify worker forms inference batches: length buckets and a load-adaptive cut time.

Pure logic, no Kafka and no torch, so it is unit-tested on its own (tests/unit/test_classify_batching.py).

- `length_buckets`: the encoder pads every row of a forward pass to its longest row, so a batch is
  sorted by token count and cut into chunks where the padding saved outweighs the fixed cost of one
  more forward pass (an exact dynamic programme over the sorted lengths, at most `max_rows` per chunk).
- `BatchPolicy`: when to cut the next batch from the worker's intake. With the model idle it cuts at
  once, whatever is there (light traffic: small batches, no waiting); with the model busy it lets the
  backlog grow and cuts just early enough that the next batch is decoded and tokenised by the time the
  running one ends (under load: large batches, and the model never waits for its input). The timings
  it plans with are moving averages of what the worker measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Fixed cost of one forward pass, in padded-token equivalents (Python and kernel dispatch per layer,
# smaller matmuls being less efficient). Measured order of magnitude for e5-small on 2 CPU cores: a
# 1 x 8 forward pass costs about as much as 100-150 more tokens in a big batch.
CHUNK_OVERHEAD_TOKENS = 128


def length_buckets(lengths: Sequence[int], max_rows: int,
                   overhead_tokens: int = CHUNK_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices of ``lengths`` grouped into padded chunks, longest first, each at most ``max_rows`` long.

    Minimises ``sum(overhead_tokens + rows x longest)`` over all chunkings of the length-sorted order
    (ties keep the input order). Every index appears exactly once.
    """
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    widths = [max(1, int(lengths[i])) for i in order]
    n = len(order)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(max(0, j - max_rows), j):
            cost = best[i] + overhead_tokens + (j - i) * widths[i]  # widths descend: chunk [i, j) pads to i
            if cost < best[j]:
                best[j], cut[j] = cost, i
    chunks: list[list[int]] = []
    j = n
    while j > 0:
        chunks.append(order[cut[j]:j])
        j = cut[j]
    chunks.reverse()
    return chunks


def padded_tokens(lengths: Sequence[int], chunks: Sequence[Sequence[int]]) -> int:
    """Tokens a forward pass over ``chunks`` actually computes (each chunk padded to its longest)."""
    return sum(len(c) * max(lengths[i] for i in c) for c in chunks if c)


@dataclass
class _Average:
    """Exponentially weighted moving average; None until the first observation."""

    alpha: float
    value: float | None = None

    def add(self, x: float) -> None:
        self.value = x if self.value is None else self.value + self.alpha * (x - self.value)


class BatchPolicy:
    """Decides how long the worker's intake lets the next batch grow before cutting it.

    The worker tells it what it measured (``observe_prepare``, ``observe_inference``) and asks
    ``wait_before_cut`` each time it could cut a batch. Seconds are plain floats; no clock inside.
    """

    def __init__(self, max_batch: int, max_wait: float, alpha: float = 0.2):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._prepare = _Average(alpha)     # seconds per mention to decode + tokenise
        self._infer = _Average(alpha)       # seconds per mention in the model (encoder + heads)

    def observe_prepare(self, n: int, seconds: float) -> None:
        if n > 0:
            self._prepare.add(seconds / n)

    def observe_inference(self, n: int, seconds: float) -> None:
        if n > 0:
            self._infer.add(seconds / n)

    def expected_inference(self, n: int) -> float:
        """Seconds the model is expected to take for a batch of ``n`` (0 while nothing was measured)."""
        return (self._infer.value or 0.0) * n

    def expected_prepare(self, n: int) -> float:
        return (self._prepare.value or 0.0) * n

    def batch_size(self, queued: int) -> int:
        """How many of ``queued`` mentions the next batch takes."""
        return max(0, min(queued, self.max_batch))

    def wait_before_cut(self, queued: int, running: int | None, running_for: float = 0.0) -> float:
        """Seconds to let the backlog grow before cutting the next batch (0 = cut now).

        ``queued``: mentions waiting in the intake. ``running``: the size of the batch in the model, None
        when the model is idle; ``running_for``: seconds it has been running.
        """
        if queued <= 0:
            return self.max_wait   # nothing to cut: the caller waits for an arrival anyway
        if running is None or queued >= self.max_batch:
            return 0.0             # an idle model, or a full batch: go
        if self._infer.value is None:
            return self.max_wait   # nothing measured yet: let the batch grow, within bounds
        # Busy: the batch cut now would only wait for the model. Cut it when what is left of the running
        # batch just covers preparing the next one; grown by then, but never held longer than max_wait.
        remaining = self.expected_inference(running) - running_for
        lead = self.expected_prepare(self.max_batch)
        return max(0.0, min(self.max_wait, remaining - lead))
