"""GitHub-shaped API errors raised by operations and rendered by the server."""
from __future__ import annotations

DOCS = "https://docs.github.com/rest"


class ApiError(Exception):
    """An error answered as GitHub does: ``{"message", "documentation_url", "status"[, "errors"]}``."""

    def __init__(self, status: int, message: str, errors: list | None = None, headers: dict | None = None):
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> dict:
        """The JSON body GitHub would send."""
        out = {"message": self.message, "documentation_url": DOCS, "status": str(self.status)}
        if self.errors:
            out["errors"] = self.errors
        return out


def not_found() -> ApiError:
    """GitHub's generic 404 (also used for resources the caller may not see)."""
    return ApiError(404, "Not Found")


def validation(resource: str, field: str, code: str = "invalid", message: str | None = None) -> ApiError:
    """A 422 "Validation Failed" with one error entry."""
    err = {"resource": resource, "field": field, "code": code}
    if message:
        err["message"] = message
    return ApiError(422, "Validation Failed", [err])
