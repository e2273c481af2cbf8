"""How the engine's errors become HTTP answers: one JSON shape, `{"error": {code, message,
details}}`, with a status that says what the caller can do about it."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowmonkey_celery.errors import ErrorCode, FlowMonkeyError, FlowValidationError

log = logging.getLogger("flowmonkey_celery.api")

STATUS_OF: dict[ErrorCode, int] = {
    ErrorCode.FLOW_NOT_FOUND: 404,
    ErrorCode.EXECUTION_NOT_FOUND: 404,
    ErrorCode.STEP_NOT_FOUND: 404,
    ErrorCode.TRIGGER_NOT_FOUND: 404,
    ErrorCode.EVENT_NOT_FOUND: 404,
    ErrorCode.INVALID_FLOW: 422,
    ErrorCode.HANDLER_NOT_FOUND: 422,
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_RESUME_TOKEN: 400,
    ErrorCode.RESUME_TOKEN_EXPIRED: 410,
    ErrorCode.EXECUTION_NOT_WAITING: 409,
    ErrorCode.EXECUTION_TIMEOUT: 409,
    ErrorCode.WAIT_TIMEOUT: 409,
    ErrorCode.VERSION_CONFLICT: 409,
    ErrorCode.EXECUTION_EXISTS: 409,
    ErrorCode.TRIGGER_DISABLED: 409,
    ErrorCode.INVALID_TRANSITION: 409,
    ErrorCode.TRIGGER_MISCONFIGURED: 503,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.INVALID_SIGNATURE: 401,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.STORE_UNAVAILABLE: 503,
    ErrorCode.SCHEMA_OUTDATED: 503,
}


class ApiError(FlowMonkeyError):
    """An error the API raises itself, with its HTTP status."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code, details)
        self.status = status
        self.headers = headers


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def not_found(what: str, ident: str, code: ErrorCode) -> ApiError:
    """The same answer for "unknown" and "not yours": existence never leaks across tenants."""
    return ApiError(404, code, f"{what} {ident!r} not found", {"id": ident})


def _issue(error: Any) -> dict[str, str]:
    """One problem of a request, with its location (`body.flow_id`, `query.limit`)."""
    loc = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid":  # FastAPI puts the character position in loc
        reason = (error.get("ctx") or {}).get("error", "invalid JSON")
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        return {"path": "body", "message": f"the body is not valid JSON{where}: {reason}"}
    return {"path": ".".join(loc), "message": str(error.get("msg"))}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FlowMonkeyError)
    async def flowmonkey_error(_: Request, exc: FlowMonkeyError) -> JSONResponse:
        status = exc.status if isinstance(exc, ApiError) else STATUS_OF.get(exc.code, 500)
        details = dict(exc.details)
        message = exc.message
        if isinstance(exc, FlowValidationError):
            details["issues"] = [{"path": path, "message": msg} for path, msg in exc.issues]
            listed = "; ".join(f"{path or '<flow>'}: {msg}" for path, msg in exc.issues[:10])
            more = f" (and {len(exc.issues) - 10} more)" if len(exc.issues) > 10 else ""
            message = f"{message}: {listed}{more}"
        headers = exc.headers if isinstance(exc, ApiError) else None
        return JSONResponse(error_body(exc.code.value, message, details), status, headers=headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in the API")
        return JSONResponse(
            error_body("INTERNAL_ERROR", f"unexpected error ({type(exc).__name__}); see the log"),
            500,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        issues = [_issue(error) for error in exc.errors()]
        listed = "; ".join(f"{issue['path']}: {issue['message']}" for issue in issues)
        return JSONResponse(
            error_body(
                ErrorCode.INVALID_INPUT.value,
                f"the request is invalid ({len(issues)} problem(s)): {listed}",
                {"issues": issues},
            ),
            422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing's own answers (no such route, wrong method) in the same shape.
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
        return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)
