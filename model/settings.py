"""One typed settings object for every layer; values come from `SMAPX_*` environment variables."""

import re
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from model.errors import InputError


class Settings(BaseSettings):
    """Runtime configuration. Every field can be set as `SMAPX_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SMAPX_", env_file=None, extra="ignore")

    data_dir: Path = Field(
        Path("data"), description="Where the demo (demo/) and bulk jobs (jobs/) keep their files."
    )
    redis_url: str | None = Field(
        None, description="Celery broker and result backend; unset = embedded."
    )
    torch_threads: int = Field(
        0,
        description="Compute threads per process (torch and the inference kernels); 0 = all cores.",
    )
    device: str = Field("auto", description="'cpu', 'cuda' or 'auto' (GPU when present).")
    inference_precision: str = Field(
        "auto",
        description="Matrix work of inference: 'auto' (int8, "
        "int16 or bf16x3 on CPUs with AMX or VNNI, bf16 on GPUs), 'int8', "
        "'int16', 'bf16x3', 'bfloat16', 'float32'.",
    )
    inference_kernel: str = Field(
        "auto",
        description="Instruction set of the CPU inference kernels: 'auto' (the first this CPU has "
        "of 'amx', 'avx512_vnni', 'avx2', 'neon'), or one of them.",
    )

    cubes: list[str] = Field(
        default_factory=list,
        description="Product cubes the service serves: "
        "paths or fsspec URLs (reached with storage_options).",
    )
    weights_path: Path | None = Field(None, description="Per-cell fusion weights (from evaluate).")
    api_keys: list[str] = Field(
        default_factory=list,
        description="Keys for jobs: each key sees only its own jobs; empty = open, every job "
        "belongs to nobody and everyone sees it.",
    )
    admin_api_key: str | None = Field(
        None, description="A key that lists, reads and cancels every job (operators)."
    )
    public_url: str | None = Field(
        None,
        description="Base of the links in job records (e.g. https://smapx.example.org); "
        "unset = links relative to the API root.",
    )
    jobs_dir: Path | None = Field(
        None, description="Where bulk-job results are written; unset = the data dir's jobs/."
    )
    job_expiry_hours: float = Field(
        72.0, description="Hours a finished bulk job and its files are kept."
    )
    max_job_values: int = Field(
        200_000_000, description="Largest bulk job, in cell-days x products."
    )
    max_job_points: int = Field(10_000, description="Most points, or areas, in one bulk job.")
    max_job_bytes: int = Field(
        1_000_000_000,
        description="Largest bulk job, in the estimated bytes of its files (a CSV's text "
        "included).",
    )
    area_max_vertices: int = Field(
        50_000, description="Most vertices of a polygon posted for area statistics."
    )
    area_max_cell_days: int = Field(
        100_000_000,
        description="Largest area statistics request, in cells x days x products.",
    )
    max_series_values: int = Field(
        2_000_000,
        description="Most values (points x days x products) one POST /v1/series reads; larger "
        "batches answer 413 and belong in a bulk job.",
    )
    max_body_bytes: int = Field(
        2_000_000, description="Largest request body (bytes); larger ones answer 413."
    )
    max_json_depth: int = Field(8, description="Deepest nesting of a JSON request body.")
    header_timeout_seconds: float = Field(
        10.0,
        description="Seconds a connection has to send a request's head, from its opening or "
        "its previous answer; then it is closed.",
    )
    body_timeout_seconds: float = Field(
        30.0, description="Seconds a request has to send its whole body; then 408."
    )
    keep_alive_seconds: float = Field(
        5.0, description="Seconds an idle keep-alive connection stays open."
    )
    rate_limit_per_minute: int = Field(
        6000,
        description="Requests per known API key (else per client address) per sliding minute; "
        "0 = off.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For "
        "names the client; from any other peer the header is ignored.",
    )
    storage_options: dict = Field(
        default_factory=dict,
        description="fsspec options for cube stores (JSON), e.g. an S3 endpoint.",
    )
    task_visibility_timeout: int = Field(
        20,
        description="Seconds without a heartbeat after which a task whose worker vanished "
        "(killed, lost) is delivered again; a running task's heartbeat keeps it its own.",
    )
    task_max_retries: int = Field(
        3, description="Retries of a failing task, with exponential backoff."
    )
    reload_seconds: float = Field(
        60.0,
        description="How often the service checks its cubes' generation and swaps to a grown "
        "or rewritten cube; 0 = never.",
    )

    cache_mb: int = Field(
        512,
        description="Memory for the cubes' decoded chunks, per API process (MB): the service "
        "reads cubes lazily through it, whatever their size.",
    )
    serve_in_memory: bool = Field(
        False,
        description="Hold each served cube whole in memory instead (small cubes; the baseline).",
    )
    tile_index_cache_mb: int = Field(
        64, description="Memory for the tiles' cached pixel-to-cell indices, per API process (MB)."
    )

    @model_validator(mode="after")
    def _jobs_under_data_dir(self) -> "Settings":
        """Job results live under the data dir unless told otherwise."""
        if self.jobs_dir is None:
            self.jobs_dir = self.data_dir / "jobs"
        return self


def markdown_table() -> str:
    """The settings as the README's table: variable, default, meaning; made from the class, so
    the documentation cannot drift from the code (a test compares them)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        shown = "unset" if default is None else f"`{default}`" if default != [] else "empty"
        rows.append(f"| `SMAPX_{name.upper()}` | {shown} | {field.description or ''} |")
    return "\n".join(rows)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment; a bad value is a user error
    that names its variable in one line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise InputError(bad_setting(exc)) from None
    except SettingsError as exc:  # a JSON-valued setting that does not parse
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"SMAPX_{field.group(1).upper()}" if field else "a SMAPX_ setting"
        raise InputError(f"{name}: not valid JSON") from None


def bad_setting(exc: ValidationError) -> str:
    """`SMAPX_NAME=value: why` for the first invalid setting."""
    err = exc.errors()[0]
    name = "SMAPX_" + "_".join(str(p) for p in err["loc"][:1]).upper()
    value = err.get("input")
    shown = f"={value}" if isinstance(value, str) else ""
    return f"{name}{shown}: {err['msg'].removeprefix('Value error, ')}"
