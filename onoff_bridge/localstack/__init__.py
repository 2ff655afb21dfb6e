"""A real Kafka broker and Schema Registry as local processes, for machines without Docker.

Kafka and Apicurio Registry are fetched with Maven from Maven Central and run on
loopback; their data, logs and pid files live under `var/`.

Errors (all derive from `StackError`)::

    StackError
    ├── ToolMissingError      java or mvn is absent or too old
    ├── PortInUseError        a port the stack needs belongs to someone else
    ├── FetchError            Maven could not fetch a distribution
    └── ServiceStartError     a service did not start answering in time
"""

from onoff_bridge.localstack.errors import (
    FetchError,
    PortInUseError,
    ServiceStartError,
    StackError,
    ToolMissingError,
)
from onoff_bridge.localstack.settings import StackSettings
from onoff_bridge.localstack.stack import LocalStack, StackEndpoints

__all__ = [
    "FetchError",
    "LocalStack",
    "PortInUseError",
    "ServiceStartError",
    "StackEndpoints",
    "StackError",
    "StackSettings",
    "ToolMissingError",
]
