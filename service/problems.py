"""User errors as HTTP answers: 422 for a bad parameter, 404 outside the grid, period or
catalogue, 413 for a request too large; each one line, never a traceback."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from model.errors import OutOfRangeError, SmapxError


class OutsideCube(OutOfRangeError):
    """A point or period outside a served cube; the answer carries the cube's valid extent."""

    def __init__(self, message: str, extent: dict):
        super().__init__(message)
        self.extent = extent


def too_large(message: str, limit: int) -> JSONResponse:
    return JSONResponse({"detail": message, "limit": limit}, status_code=413)


def install(app: FastAPI) -> None:
    """Map the model's errors to statuses."""

    @app.exception_handler(SmapxError)
    async def smapx_error(request: Request, exc: SmapxError) -> JSONResponse:
        status = 404 if isinstance(exc, OutOfRangeError) else 422
        body = {"detail": str(exc)}
        if isinstance(exc, OutsideCube):
            body["extent"] = exc.extent
        return JSONResponse(body, status_code=status)
