"""OpenAI's error object and the handlers that turn every failure into it.

Every error the server answers is `{"error": {"message", "type", "param", "code"}}` with
`param` naming the offending field, whether it comes from a handler (`APIError`), from
request validation (pydantic), from Starlette (404, 405) or from an unexpected exception
(500): a client never has to parse a plain-text body.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("gpt2kit.serve")

# Union-member tags pydantic adds to error locations ("str", "list[int]", "AnswerItem").
_TYPE_TAG = re.compile(
    r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|[A-Z]\w*(Item|Part|Message|Format)?|function-.*|tagged-union.*)$"
)


class APIError(Exception):
    """An error answered as OpenAI's error object."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status,
            message,
            type_,
            param,
            code,
        )
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that answer every error in OpenAI's shape."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _TYPE_TAG.match(str(p))]
        if first.get("type") == "json_invalid":
            message, param = (
                f"malformed JSON body: {first.get('ctx', {}).get('error', first.get('msg'))}",
                None,
            )
        else:
            param = ".".join(loc) or None
            message = f"{param or 'body'}: {first.get('msg', 'invalid value')}"
            if "input" in first and param is not None:
                message += f" (got {_preview(first['input'])})"
        return APIError(400, message, param=param, code=first.get("type")).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        return APIError(err.status_code, str(err.detail), type_="invalid_request_error").response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return APIError(
            500, f"internal error: {type(err).__name__}: {err}", type_="server_error"
        ).response()


def _preview(value: Any) -> str:
    try:
        text = json.dumps(value, default=str)
    except ValueError:  # e.g. a lone surrogate json cannot re-encode strictly
        text = repr(value)
    return text[:100]
