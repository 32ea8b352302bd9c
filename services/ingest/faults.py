"""Server faults logged once per cause, rate-limited: a flood of one bug is one log line a minute, not
a traceback per request (pure apart from the log; the clock is injectable for tests)."""

from __future__ import annotations

import logging
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


class RateLimitFilter(logging.Filter):
    """For aiohttp's own loggers (`aiohttp.server` logs a traceback for every malformed request it
    answers 400 itself): the first record of each (logger, message, exception type) passes, then at
    most one per `interval` seconds."""

    def __init__(self, interval: float = 60.0, max_causes: int = 256, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self.max_causes = max_causes
        self._clock = clock
        self._last: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        cause = (record.name, str(record.msg), exc)
        now = self._clock()
        last = self._last.get(cause)
        if last is not None and now - last < self.interval:
            return False
        self._last[cause] = now
        self._last.move_to_end(cause)
        while len(self._last) > self.max_causes:
            self._last.popitem(last=False)
        return True


_AIOHTTP_FILTER = RateLimitFilter()


def limit_aiohttp_logs() -> None:
    """Installs the rate limit on aiohttp's server loggers (idempotent)."""
    for name in ("aiohttp.server", "aiohttp.web"):
        logger = logging.getLogger(name)
        if _AIOHTTP_FILTER not in logger.filters:
            logger.addFilter(_AIOHTTP_FILTER)
