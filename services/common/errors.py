"""The project's errors: one base class, and the delivery error that says why a receiver failed.

Every exception class the services define derives from `TriageError` (and keeps its standard base,
`ValueError` or `RuntimeError`, so `except ValueError` still catches a bad routing file), so a caller
can tell the project's own failures from a library's with one `except`.

A `DeliveryError` carries a `reason` from a small closed set, as Alertmanager's `notify/util.go`
`ErrorWithReason` does, and whether the failure is worth another attempt (`retriable`, as on
aiokafka's error classes) follows from that reason alone. The reason is a metrics label (bounded
cardinality), a log field and part of the page history, so a 401 (a bad key: a person must fix it),
a 400 (a bad payload: a bug) and a 429 (slow down) no longer look the same.
"""

from __future__ import annotations

from enum import StrEnum


class TriageError(Exception):
    """Base class of every error the services raise on purpose.

    Example:

        from services.common.errors import TriageError

        try:
            tree = routing_file.load("routes.yaml")
        except TriageError as exc:          # a RoutingConfigError is one (and a ValueError)
            print(f"invalid: {exc}")
    """


class DeliveryReason(StrEnum):
    """Why a delivery to a receiver failed; the values are metrics label values, never add a free-form one."""

    CLIENT_ERROR = "client_error"   # the receiver rejected the request itself (4xx): a bug or bad config
    AUTH_ERROR = "auth_error"       # 401/403, or the API said the token is invalid: a person must fix the key
    RATE_LIMITED = "rate_limited"   # 429 (or the API's own "slow down"): retried after Retry-After
    SERVER_ERROR = "server_error"   # 5xx, or an answer that makes no sense: retried
    TIMEOUT = "timeout"             # no answer in time (or 408): retried
    NETWORK = "network"             # no connection, a broken one, the broker unreachable: retried

    @property
    def retriable(self) -> bool:
        """Whether a failure for this reason is worth another attempt (the request itself was fine)."""
        return self in RETRIABLE_REASONS


RETRIABLE_REASONS = frozenset({DeliveryReason.RATE_LIMITED, DeliveryReason.SERVER_ERROR, DeliveryReason.TIMEOUT,
                               DeliveryReason.NETWORK})


class DeliveryError(TriageError):
    """A receiver did not take a delivery or a page, and why (`reason`); `retriable` follows from the reason.

    Example:

        from services.common.errors import DeliveryError, DeliveryReason

        err = DeliveryError("pagerduty pd answered HTTP 401: invalid routing key", DeliveryReason.AUTH_ERROR)
        assert err.reason == "auth_error" and not err.retriable   # dead-lettered at once, not retried
        err = DeliveryError("pagerduty pd answered HTTP 429", DeliveryReason.RATE_LIMITED, retry_after=30.0)
        assert err.retriable and err.retry_after == 30.0
    """

    def __init__(self, message: str, reason: DeliveryReason = DeliveryReason.SERVER_ERROR,
                 retry_after: float | None = None):
        super().__init__(message)
        self.reason = DeliveryReason(reason)
        self.retry_after = retry_after  # what the receiver asked for (429 / 503 Retry-After), in seconds

    @property
    def retriable(self) -> bool:
        return self.reason.retriable

    @property
    def retryable(self) -> bool:
        """The flag's former name (before reasons), kept for callers outside the router."""
        return self.retriable
