"""Server faults logged once per cause, rate-limited: a flood of one bug is one log line a minute, not
a traceback per request (pure apart from the log; the clock is injectable for tests)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from services.common.logging import get_logger
from services.ingest import metrics as m

log = get_logger("ingest")


class FaultLog:
    """`report(where, exc)`: counts every fault; logs the first of each cause (where + exception type)
    with its traceback, then at most one line per `interval` seconds with how many were suppressed."""

    def __init__(self, interval: float = 60.0, max_causes: int = 256, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.max_causes = max_causes
        self._clock = clock
        self._causes: OrderedDict[str, tuple[float, int]] = OrderedDict()  # cause -> (last logged, suppressed)

    def report(self, where: str, exc: BaseException) -> bool:
        """True when this fault was logged (False: counted and suppressed)."""
        cause = f"{where}:{type(exc).__name__}"
        m.SERVER_FAULTS.labels(where, type(exc).__name__).inc()
        now = self._clock()
        last = self._causes.get(cause)
        if last is not None and now - last[0] < self.interval:
            self._causes[cause] = (last[0], last[1] + 1)
            return False
        suppressed = last[1] if last is not None else 0
        self._causes[cause] = (now, 0)
        self._causes.move_to_end(cause)
        while len(self._causes) > self.max_causes:
            self._causes.popitem(last=False)
        extra: dict[str, object] = {"exc_info": exc} if last is None else {}  # one traceback per cause
        log.error("server_fault", where=where, error=type(exc).__name__, detail=str(exc)[:200],
                  suppressed_since_last=suppressed, **extra)
        return True


FAULTS = FaultLog()
