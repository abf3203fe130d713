"""The error hierarchy shared by the daemon and its clients.

It lives in the light `ipc` package so a client can catch the same classes the daemon
raises; each class carries the protocol error code it maps to.
"""

from __future__ import annotations


class RcmdError(Exception):
    """Base of every error rcmd reports to a user or a client."""

    code = "internal"


class BadRequest(RcmdError):
    """The request is malformed: bad JSON, wrong types, missing fields."""

    code = "bad_request"


class UnknownMethod(RcmdError):
    """The request names a method the daemon does not have."""

    code = "unknown_method"


class NotFound(RcmdError):
    """A root or path the request names is not registered or does not exist."""

    code = "not_found"


class Busy(RcmdError):
    """The daemon cannot take the request now (for example, it is shutting down)."""

    code = "busy"


class Stopping(Busy):
    """The daemon is stopping (`rcmd stop`, SIGTERM): a request it was answering, or read
    meanwhile, is not carried out (its stores are being closed under it)."""

    code = "stopping"


#: What a request cut short by a stop is told.
STOPPING_MESSAGE = (
    "the daemon is stopping; run the command again once it has stopped "
    "(the rcmd CLI starts a new daemon), or start one with: rcmd daemon"
)


class Timeout(RcmdError):
    """A `wait` reached its deadline before the root was idle; asking again is fine."""

    code = "timeout"


class ConfigError(RcmdError):
    """The configuration file or an RCMD_* variable holds an invalid value."""

    code = "config"


class StateError(RcmdError):
    """Persistent state could not be read or written."""

    code = "state"


class DaemonNotRunning(RcmdError):
    """The client found no daemon on the socket."""

    code = "not_running"


class AlreadyRunning(RcmdError):
    """Another daemon holds the single-instance lock."""

    code = "already_running"
    #: The daemon's exit status when it finds another one running (EX_TEMPFAIL): a client
    #: that spawned it waits for the other one instead of reporting a failure.
    exit_status = 75


_BY_CODE: dict[str, type[RcmdError]] = {
    cls.code: cls
    for cls in (
        RcmdError,
        BadRequest,
        UnknownMethod,
        NotFound,
        Busy,
        Stopping,
        Timeout,
        ConfigError,
        StateError,
        DaemonNotRunning,
        AlreadyRunning,
    )
}


def error_for_code(code: str, message: str) -> RcmdError:
    """Rebuild the exception a daemon reported, so clients can `except NotFound:`."""
    return _BY_CODE.get(code, RcmdError)(message)
