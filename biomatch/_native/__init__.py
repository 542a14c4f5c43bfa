"""The native core, in the build for the best instruction set this CPU runs.

The C++ matcher is compiled once per kernel, each an extension module of this package:
``_portable`` (baseline of the target architecture), ``_avx2`` (x86-64-v3: AVX2, FMA, BMI2,
POPCNT) and ``_avx512`` (x86-64-v4 and AVX-512 VPOPCNTDQ). Importing this package loads the
fastest one the CPU runs, or the one named by the environment variable ``BIOMATCH_KERNEL``;
its functions and classes are this package's (``Config``, ``prepare``, ``match_many``, ...).
Every kernel gives bit-identical scores (``tests/test_native_kernels.py``).

The portable module is imported first in any case: it is the one that asks the CPU what it
runs (a module built for AVX-512 may use those instructions as soon as it loads).
"""

from __future__ import annotations

import importlib
import importlib.util
import os

from ..errors import InvalidInputError

#: Every kernel this package knows, from the most portable to the fastest.
KERNELS = ("portable", "avx2", "avx512")

#: Environment variable that forces one kernel (it must be built and run on this CPU).
KERNEL_ENV = "BIOMATCH_KERNEL"


def _module(name: str):
    return importlib.import_module(f"{__name__}._{name}")


def built_kernels() -> tuple[str, ...]:
    """The kernels this installation contains (the build leaves out the x86 ones elsewhere)."""
    out = []
    for name in KERNELS:
        try:
            spec = importlib.util.find_spec(f"{__name__}._{name}")
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            out.append(name)
    return tuple(out)


def available_kernels() -> tuple[str, ...]:
    """The kernels both built and run by this CPU, from the most portable to the fastest."""
    runs = set(_module("portable").cpu_kernels())
    return tuple(k for k in built_kernels() if k in runs)


def load_kernel(name: str):
    """The extension module of kernel ``name``.

    Raises
    ------
    InvalidInputError
        ``name`` is not a kernel, is not built, or this CPU does not run it.
    """
    if name not in KERNELS:
        raise InvalidInputError(f"kernel: expected one of {', '.join(KERNELS)}, got {name!r}")
    available = available_kernels()
    if name not in available:
        why = "not built in this installation" if name not in built_kernels() else "not run by this CPU"
        raise InvalidInputError(
            f"kernel: {name!r} is {why}; expected one of {', '.join(available)}"
        )
    return _module(name)


def _select():
    forced = os.environ.get(KERNEL_ENV, "").strip()
    if forced:
        try:
            return load_kernel(forced)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{KERNEL_ENV}={forced!r}: {exc}") from None
    return _module(available_kernels()[-1])


_impl = _select()
#: The kernel in use: "portable", "avx2" or "avx512".
kernel: str = _impl.kernel
globals().update({k: v for k, v in vars(_impl).items() if not k.startswith("__") and k != "kernel"})
