"""Errors the SDK raises: what the hub refused (with the API's code, message and field), and a
hub that could not be reached."""

from __future__ import annotations


class HiveError(Exception):
    """Base class of the SDK's errors."""


class ApiError(HiveError):
    """The hub answered with an error: its HTTP status and the API's `code`, `message` and
    `field` (the field of the request that is wrong, when there is one)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        where = f" (field {field})" if field else ""
        super().__init__(f"the hub answered {status} {code}: {message}{where}")


class Unreachable(HiveError):
    """No answer from the hub (refused connection, timeout, or an answer that is not the API's)."""
