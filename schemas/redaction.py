"""What of a rejection reason may be shown to more people than its record's readers.

A dead-letter record keeps the whole reason, values from the body included,
so an operator can see what was wrong. Logs and `onoff-bridge deadletter`
output are read by more people and kept in more places: there every value is
cut out, leaving the words that say what went wrong. Used by the processors'
logs and the CLI, for reasons from the ingress and from the processors alike.
"""

from __future__ import annotations

import re

# Anything that may be a value from a body: quoted text (escaped quotes inside
# included, as repr() writes them), URLs, e-mail addresses, and any word with a
# digit in it (phone numbers, ids, dates, amounts).
_VALUES = re.compile(
    r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\b[a-z][a-z0-9+.-]*://\S+|\S+@\S+"""
    r"""|[^\s:,;()\[\]{}<>=]*\d[^\s,;()\[\]{}<>]*""",
    re.IGNORECASE,
)
# Words with digits that the code itself writes into reasons, never a body's value.
_KEPT = frozenset({"ISO-8601", "64-bit"})
MAX_REDACTED_CHARS = 200


def redact_reason(reason: str, max_chars: int = MAX_REDACTED_CHARS) -> str:
    """`reason` with every value cut out (each becomes `…`), at most `max_chars` long."""
    return _VALUES.sub(_cut, reason)[:max_chars]


def _cut(match: re.Match[str]) -> str:
    return match.group() if match.group() in _KEPT else "…"
