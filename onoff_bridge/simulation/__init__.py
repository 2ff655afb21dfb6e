"""A realistic Onoff sender for the whole pipeline, and a check of every topic against what it sent.

`simulate` plans traffic from a seed (`traffic`), serves the audio its links
point at (`audio`), sends each delivery the way Onoff does (`sender`, with its
retries) and writes everything to a JSON-lines ledger (`ledger`). `verify`
reads the topics back (`readback`) and checks them against the ledger
(`verify`).

Errors (all derive from `SimulationError`)::

    SimulationError
    ├── ActivationFailedError   the test payload was not accepted: Onoff would not activate
    ├── LedgerError             a ledger file is missing or unreadable
    └── TopicReadError          a topic to verify is missing or cannot be read
"""


class SimulationError(Exception):
    """Root of every error the simulator and the verifier raise on purpose."""


class ActivationFailedError(SimulationError):
    """The activation test payload was refused, so Onoff would not turn the integration on."""


class LedgerError(SimulationError):
    """The ledger file cannot be read."""


class TopicReadError(SimulationError):
    """A topic that verify reads does not exist or answers an error."""
