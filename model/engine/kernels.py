"""The compiled inference kernels: one shared library per instruction set and precision, built
when the package is installed (setup.py reads this file alone, before anything is installed, so
it imports nothing of the package) and loaded with ctypes by model.engine."""

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

X86_64 = ("x86_64", "amd64")
ARM64 = ("aarch64", "arm64")

# Instruction sets, fastest first: the engine runs the first one this CPU has, unless
# SMAPX_INFERENCE_KERNEL names another.
INSTRUCTION_SETS = {"amx": "AMX", "avx512_vnni": "AVX-512 VNNI", "avx2": "AVX2+FMA", "neon": "NEON"}


@dataclass(frozen=True)
class KernelBuild:
    """One shared library, model/engine/<name>.so, compiled from `source` with `defines`."""

    name: str
    source: str
    defines: tuple[tuple[str, str], ...]
    instruction_set: str  # a key of INSTRUCTION_SETS
    precision: str
    machines: tuple[str, ...]  # platform.machine(), lower case, where it builds and runs
    flags: tuple[str, ...]
    hidden: int  # the LSTM's hidden units it is compiled for (its H define)


FLOAT32_FLAGS = ("-ffp-contract=off",)  # only the sources' explicit FMAs: fixed rounding
# The network sizes every kernel is built for (its H define): the default of 128 units, the
# previous default of 256, and 64. A network of 128 units costs a quarter of the multiply-adds of
# one of 256.
HIDDEN_SIZES = (64, 128, 256)


def _sized(
    kind: str,
    source: str,
    defines: tuple[tuple[str, str], ...],
    instruction_set: str,
    precision: str,
    machines: tuple[str, ...],
    flags: tuple[str, ...] = (),
) -> tuple[KernelBuild, ...]:
    """One kernel built for each of HIDDEN_SIZES: kernel_<kind>_<precision>_h<units>."""
    return tuple(
        KernelBuild(
            f"kernel_{kind}_{precision}_h{h}",
            source,
            (*defines, ("H", str(h))),
            instruction_set,
            precision,
            machines,
            flags,
            h,
        )
        for h in HIDDEN_SIZES
    )


BUILDS = (
    *_sized("amx", "kernel_amx_int.c", (("SPLIT", "0"),), "amx", "int8", X86_64),
    *_sized("amx", "kernel_amx_int.c", (("SPLIT", "1"),), "amx", "int16", X86_64),
    *_sized("amx", "kernel_amx_bf16.c", (), "amx", "bf16x3", X86_64),
    *_sized("vnni", "kernel_vnni.c", (("WIDE", "0"),), "avx512_vnni", "int8", X86_64),
    *_sized("vnni", "kernel_vnni.c", (("WIDE", "1"),), "avx512_vnni", "int16", X86_64),
    *_sized("avx2", "kernel_fp32.c", (), "avx2", "float32", X86_64, FLOAT32_FLAGS),
    *_sized("neon", "kernel_neon_int8.c", (), "neon", "int8", ARM64, FLOAT32_FLAGS),
    *_sized("neon", "kernel_fp32.c", (), "neon", "float32", ARM64, FLOAT32_FLAGS),
)


def included_headers(source: Path) -> list[Path]:
    """The headers beside a C file that it includes, directly or through another (whatever its
    #if around them), in a fixed order."""
    found: list[Path] = []
    pending = [source]
    while pending:
        for name in re.findall(r'^#include "([^"]+)"', pending.pop().read_text(), re.MULTILINE):
            header = source.parent / name
            if header.is_file() and header not in found:
                found.append(header)
                pending.append(header)
    return sorted(found)


def source_digest(build: KernelBuild, folder: Path) -> str:
    """A digest of what a kernel is built from (its source, the headers it includes, defines and
    flags), compiled into the library, so that a library older than its sources (an editable
    install whose C files changed since) is known as such."""
    h = hashlib.sha256(repr((build.defines, build.flags)).encode())
    source = folder / build.source
    for path in [source, *included_headers(source)]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def compile_defines(build: KernelBuild, folder: Path) -> list[tuple[str, str]]:
    """The macros a kernel is compiled with: its build's, and the digest of what it is built
    from (network.h's smapx_source_digest)."""
    return [*build.defines, ("SMAPX_SOURCE_DIGEST", f'"{source_digest(build, folder)}"')]
