"""Builds deephash's C search kernel; everything else is configured in pyproject.toml.

The kernel dispatches on the CPU at run time (target attributes), so it is compiled without
-march and a wheel built on one x86-64 machine runs on any other.
"""
import numpy as np
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "deephash.index._hamming",
            sources=["src/deephash/index/_hamming.c"],
            include_dirs=[np.get_include()],
            extra_compile_args=["-O3", "-std=c11", "-pthread"],
            extra_link_args=["-pthread"],
        )
    ]
)
