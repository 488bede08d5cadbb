"""The one error tree of cybermission.

::

    CybermissionError
    ├── NotFoundError          a thing asked for by id does not exist
    ├── ConflictError          a create or update clashes with what is stored
    ├── ValidationError        input (targets, ports, payloads) is not what was expected
    ├── ScopeError             a target is outside every authorised scope: nothing was sent
    ├── ProbeError             a device did not give a usable answer
    │   ├── ProbeTimeoutError  it accepted, then stayed silent past the timeout
    │   └── ProbeProtocolError it answered bytes that do not decode
    └── RuleError              a rule file is broken (carries path:line)

HTTP status codes live only in ``api/errors.py``.
"""


class CybermissionError(Exception):
    """Base of every error the product raises on purpose."""


class NotFoundError(CybermissionError):
    """A resource asked for by id does not exist."""


class ConflictError(CybermissionError):
    """A create or update clashes with what is stored."""


class ValidationError(CybermissionError):
    """Input is not what was expected; the message names the field."""


class ScopeError(CybermissionError):
    """A target lies outside every authorised scope; nothing was sent to it."""

    def __init__(self, target: str, reason: str) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason


class ProbeError(CybermissionError):
    """A device did not give a usable answer."""


class ProbeTimeoutError(ProbeError):
    """The device accepted the connection or request, then stayed silent past the timeout."""


class ProbeProtocolError(ProbeError):
    """The device answered with bytes that do not decode as the protocol."""


class RuleError(CybermissionError):
    """A rule file is broken; the message starts with ``path:line``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.detail = message
