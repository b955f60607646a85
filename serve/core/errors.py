"""The service's one error type and its JSON shape: {"error": code, "detail": message}."""
from __future__ import annotations

from typing import Any

# The errors an operation may answer, documented with the one error schema (main.py's
# document_errors gives each operation the ones its kind implies; a route declares the others
# with `responses=documented(...)`).
ERROR_DESCRIPTIONS = {
    400: "Malformed body: JSON that is not UTF-8, or a multipart body that cannot be parsed",
    401: "Missing, unknown or revoked API key",
    403: "The key's role may not do this",
    404: "Unknown id, or one the key may not see (both look the same)",
    409: "Conflicts with the current state (duplicate, pair already closed, no consent to a "
         "diary, Idempotency-Key reused for another request)",
    410: "The stored photo is gone (retention purge) or unreadable",
    413: "An uploaded file or the body is over the size limit",
    415: "Wrong content type: not multipart/form-data, or a file that is no JPEG/PNG/WebP",
    422: "Invalid input: schema violation, NUL character, unusable photo or depth map",
}


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route that may answer these errors besides those of its kind."""
    return {code: {"description": ERROR_DESCRIPTIONS[code]} for code in codes}


class ApiError(Exception):
    """An error a client caused (4xx) or should be told about, with a stable code."""

    def __init__(
        self, status_code: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.code = code
        self.detail = detail
        self.headers = headers

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        return {"error": self.code, "detail": self.detail}


def not_found(kind: str, ident: object) -> ApiError:
    """404 for an unknown id, or one the caller may not see (both look the same)."""
    return ApiError(404, "not_found", f"no {kind} with id {ident!r}")


def forbidden(detail: str) -> ApiError:
    """403: the key is valid but its role may not do this."""
    return ApiError(403, "forbidden", detail)


def bad_request(detail: str, code: str = "bad_request") -> ApiError:
    """400 for malformed input that is not a schema violation."""
    return ApiError(400, code, detail)


def unprocessable(detail: str, code: str = "invalid_input") -> ApiError:
    """422 for well-formed input whose content cannot be used."""
    return ApiError(422, code, detail)
