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
