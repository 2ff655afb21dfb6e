"""The local stack's exceptions; the tree is drawn in the package docstring."""


class StackError(Exception):
    """Root of every error the local stack raises on purpose."""


class ToolMissingError(StackError):
    """A program the stack needs (java, mvn) is missing or too old."""


class PortInUseError(StackError):
    """A port the stack wants is held by a process the stack did not start."""


class FetchError(StackError):
    """Maven could not fetch or unpack a distribution."""


class ServiceStartError(StackError):
    """A service exited or did not answer before its deadline."""
