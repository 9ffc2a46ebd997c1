"""Builds the inference kernels (model/engine/*.c) when the package is installed: plain shared
libraries of the package, one per instruction set and precision, loaded with ctypes at run time,
so that running smapx needs no compiler. A kernel that does not build leaves the others (and the
float32 network) to run; the engine says which one is missing and why."""

import importlib.util
import platform
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ENGINE = Path("model/engine")


def kernels_module():
    """model/engine/kernels.py, read without importing the package."""
    spec = importlib.util.spec_from_file_location("smapx_kernels", ENGINE / "kernels.py")
    kernels = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kernels)
    return kernels


class BuildKernels(build_ext):
    """Each kernel as <name>.so (no Python ABI tag: ctypes loads it, Python never imports it),
    compiled in a temp dir of its own, since two kernels may share a source with other defines."""

    def get_ext_filename(self, fullname):
        return str(Path(*fullname.split("."))) + ".so"

    def build_extension(self, ext):
        shared_temp = self.build_temp
        self.build_temp = str(Path(shared_temp, ext.name))
        try:
            super().build_extension(ext)
        finally:
            self.build_temp = shared_temp


kernels = kernels_module()
machine = platform.machine().lower()
setup(
    ext_modules=[
        Extension(
            f"model.engine.{build.name}",
            [str(ENGINE / build.source)],
            depends=[str(header) for header in kernels.included_headers(ENGINE / build.source)],
            define_macros=kernels.compile_defines(build, ENGINE),
            extra_compile_args=["-O3", *build.flags],
            optional=True,
        )
        for build in kernels.BUILDS
        if machine in build.machines
    ],
    cmdclass={"build_ext": BuildKernels},
)
