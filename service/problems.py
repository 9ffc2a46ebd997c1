"""User errors as HTTP answers, in one shape everywhere (`Problem`, RFC 9457's problem details,
media type application/problem+json): 422 for a bad parameter,
404 outside the grid, period or catalogue, 413 for a request too large, 429 past the rate limit;
each one line, never a traceback. Every /v1 route documents them (`COMMON` for all, and
the statuses a route adds: 401, 409, 413, 503)."""

import re
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse as StarletteJSON
from starlette.responses import Response
from starlette.routing import Match

from model.errors import DamagedStore, OutOfRangeError, SmapxError

MEDIA_TYPE = "application/problem+json"
PARAMETER = re.compile(r"^([A-Za-z_][\w.\-\[\]]*): ")
DESCRIPTIONS = {
    401: "API key missing or not accepted",
    404: "outside the grid, period or catalogue, or no such job",
    409: "job not finished",
    413: "request too large",
    422: "a parameter or the body is invalid",
    429: "rate limit: retry after Retry-After seconds",
    500: "a cube's store is damaged (data it should hold is missing or unreadable)",
    503: "the job queue is unavailable",
}


class Problem(BaseModel):
    """The body of every error answer (RFC 9457 problem details, with members of its own)."""

    type: str = Field("about:blank", description="The problem type: only the status says it.")
    title: str = Field(description="The status's phrase.")
    status: int = Field(description="The HTTP status.")
    detail: str = Field(description="What is wrong, in one line.")
    parameter: str | None = Field(None, description="The parameter or body field at fault.")
    extent: dict | None = Field(None, description="The cube's valid extent and period.")
    limit: int | None = Field(None, description="The limit a request went over.")


class TooLarge(HTTPException):
    """A request over a size limit (413), with the limit."""

    def __init__(self, message: str, limit: int):
        super().__init__(413, message)
        self.limit = limit


class ProblemResponse(StarletteJSON):
    media_type = MEDIA_TYPE


def problem(status: int, detail: str, headers: dict | None = None, **fields) -> JSONResponse:
    """An error answer; the parameter is the message's `name: ` prefix unless given."""
    detail = " ".join(str(detail).split())
    if "parameter" not in fields:
        match = PARAMETER.match(detail)
        fields["parameter"] = match.group(1) if match else None
    title = HTTPStatus(status).phrase
    body = Problem(title=title, status=status, detail=detail, **fields)
    return ProblemResponse(body.model_dump(exclude_none=True), status, headers=headers)


def too_large(message: str, limit: int) -> JSONResponse:
    return problem(413, message, limit=limit)


def responses(*statuses: int) -> dict:
    """OpenAPI `responses` for the given error statuses, each with the Problem body."""
    schema = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {
        s: {"model": Problem, "description": DESCRIPTIONS[s], "content": {MEDIA_TYPE: schema}}
        for s in statuses
    }


COMMON = responses(404, 422, 429)


def validation_message(exc: RequestValidationError, request: Request) -> tuple[str, str]:
    """(message, parameter) of a request's first invalid field, with a hint when lat and lon
    look swapped."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if p not in ("query", "path", "header")]
    parameter = ".".join(loc) or "request"
    message = f"{parameter}: {err['msg'].removeprefix('Value error, ')}"
    query = request.query_params
    try:
        lat, lon = float(query.get("lat", "nan")), float(query.get("lon", "nan"))
    except ValueError:
        return message, parameter
    if abs(lat) > 90 >= abs(lon):
        message += f"; did you swap them? lat={lon}&lon={lat}"
    return message, parameter


def install(app: FastAPI) -> None:
    """Map the model's errors, invalid requests and HTTP errors to Problem answers."""

    @app.exception_handler(SmapxError)
    async def smapx_error(request: Request, exc: SmapxError) -> JSONResponse:
        status = 404 if isinstance(exc, OutOfRangeError) else 422
        return problem(status, str(exc), extent=getattr(exc, "extent", None))

    @app.exception_handler(DamagedStore)
    async def damaged(request: Request, exc: DamagedStore) -> JSONResponse:
        """Data the store should hold is gone: a server fault (500), never values read as
        missing; the health check fails from then on."""
        request.app.state.catalog.record_damage(exc.store, str(exc))
        return problem(500, str(exc), parameter=None)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, parameter = validation_message(exc, request)
        return problem(422, message, parameter=parameter)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 400:  # a body the framework could not parse: a bad parameter
            return problem(422, f"body: {str(exc.detail).lower()}", parameter="body")
        if exc.status_code == 405:
            return not_allowed(request)
        return problem(exc.status_code, exc.detail, exc.headers, limit=getattr(exc, "limit", None))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at the request's path (the router stops at the first
    route of the path, which knows only its own), OPTIONS included."""
    methods = {"OPTIONS"}
    for route in leaf_routes(request.app.router.routes):
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def leaf_routes(routes):
    """The routes themselves, those of included routers too."""
    for route in routes:
        router = getattr(route, "original_router", None)
        if router is None:
            yield route
        else:
            yield from leaf_routes(router.routes)


def not_allowed(request: Request) -> Response:
    """OPTIONS: 204 with the path's methods in Allow; another method the path lacks: 405."""
    allow = {"Allow": ", ".join(allowed_methods(request))}
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=allow)
    return problem(405, f"{request.method} is not allowed here; allowed: {allow['Allow']}", allow)
