"""Environment settings that make this machine compute like other x86-64 CPUs (for the tests that compare results
across machines, and scripts/check_numerics.sh).

Each library picks its kernels by the CPU it finds; these variables cap that choice: torch's ATen vector width
(`ATEN_CPU_CAPABILITY`), oneDNN's ISA, MKL's instruction set, OpenBLAS's kernel family and threads, numpy's SIMD
dispatch, glibc's libm variants (no FMA / AVX2), libjpeg-turbo's SIMD and OpenCV's dispatch.
"""
from __future__ import annotations

import os

#: an x86-64 CPU with SSE4.2 only (no AVX, no FMA), one thread everywhere
OLD_CPU_ONE_THREAD = {
    "ATEN_CPU_CAPABILITY": "default",
    "ONEDNN_MAX_CPU_ISA": "SSE41",
    "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    "OPENBLAS_CORETYPE": "Prescott",
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL",
    "GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2,-FMA,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX",
    "JSIMD_FORCENONE": "1",
    "OPENCV_CPU_DISABLE": "AVX2,FMA3,AVX,POPCNT,SSSE3,AVX512F",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
#: a Haswell-class CPU (AVX2 + FMA), two threads
AVX2_CPU_TWO_THREADS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL",
    "OMP_NUM_THREADS": "2",
    "OPENBLAS_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}
#: the variables above (removed from a child's environment before one of the settings is applied)
ALL_VARIABLES = sorted(set(OLD_CPU_ONE_THREAD) | set(AVX2_CPU_TWO_THREADS))


def environment(setting: dict[str, str]) -> dict[str, str]:
    """os.environ with every emulation variable cleared, then `setting` applied (for a subprocess)."""
    env = {k: v for k, v in os.environ.items() if k not in ALL_VARIABLES}
    env.update(setting)
    return env
