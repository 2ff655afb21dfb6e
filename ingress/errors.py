"""The ingress's exceptions; the tree is drawn in the package docstring."""


class IngressError(Exception):
    """Root of every error the ingress raises on purpose."""


class AuthenticationError(IngressError):
    """No API key, or one that matches none of the configured keys."""


class PayloadTooLargeError(IngressError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


class PayloadRejectedError(IngressError):
    """The body cannot become a record; it goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PublishError(IngressError):
    """Kafka (or the registry) did not take the record in time; the sender must retry.

    `transient` is False when Kafka refused the record itself (too large, not
    authorized, a fatal producer): the spool would hold it for ever and every
    record behind it, so it is answered 503 even with the spool on.
    """

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient
