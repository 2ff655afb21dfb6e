"""What can become of a recording link that is not stored, as one exception tree.

Every error the recordings processor raises on purpose derives from
`RecordingError`; the class says which status the `Recording` record gets::

    RecordingError
    ├── RecordingRejectedError     policy refused it: scheme, host, address, redirects,
    │   │                          content type or size (status `rejected`, not retried)
    │   └── AddressRejectedError   the URL's host or one of its addresses is not allowed
    ├── RecordingExpiredError      403, 404 or 410: the signed link is gone (`expired`)
    └── RecordingFailedError       anything else that ended it (`failed`)
        └── TransientFetchError    timeouts, connection errors, 5xx, 429: retried with
            │                      backoff until the deadline, then `failed`
            └── StorageError       the store could not take the object

httpx, socket and boto errors are translated into these at the boundary
(`fetch.py`, `guard.py`, `storage.py`). Messages never carry a URL's query
string: signed links are credentials until they expire.
"""

from __future__ import annotations


class RecordingError(Exception):
    """Root of every error the recordings processor raises on purpose."""

    status = "failed"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RecordingRejectedError(RecordingError):
    status = "rejected"


class AddressRejectedError(RecordingRejectedError):
    pass


class RecordingExpiredError(RecordingError):
    status = "expired"


class RecordingFailedError(RecordingError):
    status = "failed"


class TransientFetchError(RecordingFailedError):
    pass


class StorageError(TransientFetchError):
    pass
