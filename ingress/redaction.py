"""A quarantine reason fit for a log line: field names and error kinds, no body values.

The reason stored in the dead-letter record keeps the offending value, so an
operator can see what was wrong; logs are read by more people and kept in more
places, so there every quoted value becomes `'…'` and every run of four or more
digits standing alone (a phone number written without quotes, a duration) becomes `#`
(not the 8601 of ISO-8601).
"""

from __future__ import annotations

import re

_QUOTED = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""")
_DIGITS = re.compile(r"(?<![\w-])\+?\d{4,}")


def redact_reason(reason: str) -> str:
    return _DIGITS.sub("#", _QUOTED.sub("'…'", reason))
