"""Errors a user can cause. The CLI prints them as one line; the service maps them to HTTP codes."""


class SmapxError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class InputError(SmapxError):
    """A file, folder, variable or parameter that is missing or malformed."""


class OutOfRangeError(SmapxError):
    """A point, region or period outside what the data covers; `extent`, where known, is what
    it does cover (model.product.cube.extent)."""

    def __init__(self, message: str, extent: dict | None = None):
        super().__init__(message)
        self.extent = extent


class DamagedStore(SmapxError):
    """Stored data that should be there is missing or unreadable: the operator's fault, never
    answered as "no data"; `store` names the damaged store."""

    def __init__(self, message: str, store: str | None = None):
        super().__init__(message)
        self.store = store


def validated(model, request):
    """`request` (a dict, or already a `model`) as the pydantic `model`; InputError naming the
    offending field otherwise."""
    from pydantic import ValidationError

    if isinstance(request, model):
        return request
    try:
        return model.model_validate(request)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "request"
        raise InputError(f"{where}: {err['msg'].removeprefix('Value error, ')}") from None
