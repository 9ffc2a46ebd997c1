"""The compiled inference kernels: one shared library per instruction set and precision, built
when the package is installed (setup.py reads this file alone, before anything is installed, so
it imports nothing of the package) and loaded with ctypes by model.engine."""

import hashlib
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
    flags: tuple[str, ...] = ()
    hidden: int = 256  # the LSTM's hidden units it is compiled for


FLOAT32_FLAGS = ("-ffp-contract=off",)  # only the source's explicit FMAs: fixed rounding
# Smaller networks the float32 kernel is also built for (its H define): a network of 128 units
# costs a quarter of the multiply-adds of one of 256.
SMALL_HIDDEN = (64, 128)


def _float32_builds(instruction_set: str, machines: tuple[str, ...]) -> tuple[KernelBuild, ...]:
    """The float32 kernel of an instruction set, for 256 hidden units and each of SMALL_HIDDEN."""
    name = f"kernel_{instruction_set}_float32"
    return (
        KernelBuild(name, "kernel_fp32.c", (), instruction_set, "float32", machines, FLOAT32_FLAGS),
        *(
            KernelBuild(
                f"{name}_h{h}",
                "kernel_fp32.c",
                (("H", str(h)),),
                instruction_set,
                "float32",
                machines,
                FLOAT32_FLAGS,
                h,
            )
            for h in SMALL_HIDDEN
        ),
    )


BUILDS = (
    KernelBuild("kernel_amx_int8", "kernel_amx_int.c", (("SPLIT", "0"),), "amx", "int8", X86_64),
    KernelBuild("kernel_amx_int16", "kernel_amx_int.c", (("SPLIT", "1"),), "amx", "int16", X86_64),
    KernelBuild("kernel_amx_bf16x3", "kernel_amx_bf16.c", (), "amx", "bf16x3", X86_64),
    KernelBuild(
        "kernel_vnni_int8", "kernel_vnni.c", (("WIDE", "0"),), "avx512_vnni", "int8", X86_64
    ),
    KernelBuild(
        "kernel_vnni_int16", "kernel_vnni.c", (("WIDE", "1"),), "avx512_vnni", "int16", X86_64
    ),
    *_float32_builds("avx2", X86_64),
    *_float32_builds("neon", ARM64),
)


def source_digest(build: KernelBuild, folder: Path) -> str:
    """A digest of what a kernel is built from (its source, the headers beside it, defines and
    flags), compiled into the library, so that a library older than its sources (an editable
    install whose C files changed since) is known as such."""
    h = hashlib.sha256(repr((build.defines, build.flags)).encode())
    for path in [folder / build.source, *sorted(folder.glob("*.h"))]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
