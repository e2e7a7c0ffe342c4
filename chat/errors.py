"""The project's one exception tree.

Everything raised on purpose derives from ``ChatError``. Storage adapters turn
driver errors into ``PersistenceError`` subclasses (PEP 249 names); the gateway
edge is the only place that turns these into protocol ``{code, message}`` values.
"""

from __future__ import annotations


class ChatError(Exception):
    """Root of every error this project raises on purpose."""

    code = "unavailable"
    status = 503

    def __init__(self, message: str = "", *, ref: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.ref = ref


class ClientError(ChatError):
    """A request the client can fix."""

    code = "bad_request"
    status = 400


class BadRequest(ClientError):
    """The request is malformed or misses a field."""


class Unauthorized(ClientError):
    """Missing or invalid credentials."""

    code = "unauthorized"
    status = 401


class Forbidden(ClientError):
    """Not allowed for this user."""

    code = "forbidden"
    status = 403


class NotFound(ClientError):
    """No such thing (or not visible to this user)."""

    code = "not_found"
    status = 404


class Conflict(ClientError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409


class TooLarge(ClientError):
    """The request is larger than the configured limit."""

    code = "too_large"
    status = 413


class RateLimited(ClientError):
    """Too many requests; retry later."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str = "", *, retry_after_ms: int = 1000, ref: str | None = None) -> None:
        super().__init__(message, ref=ref)
        self.retry_after_ms = retry_after_ms


class Unavailable(ChatError):
    """A dependency is unreachable or too slow; retry later."""


class PersistenceError(Unavailable):
    """A storage backend failed (PEP 249's DatabaseError)."""


class OperationalError(PersistenceError):
    """The storage backend is unreachable or timed out."""


class IntegrityError(PersistenceError):
    """Stored data contradicts an invariant."""


class SchemaError(ChatError):
    """An event does not match its Avro schema, or its schema is unknown."""


ERRORS_BY_CODE: dict[str, type[ChatError]] = {
    cls.code: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, RateLimited, Unavailable)
}


def error_for_code(code: str, message: str = "") -> ChatError:
    """The exception for a protocol error code (unknown codes read as unavailable)."""
    return ERRORS_BY_CODE.get(code, Unavailable)(message)


class UnknownTopic(NotFound):
    """The broker has no such topic."""
