"""Builds tfcli's one C extension, the native word segmenter (tfcli/data/_segment.c).

Everything else lives in pyproject.toml. The extension is optional: without a C compiler the
install still succeeds and `tfcli encode` uses HF tokenizers for unseen words (same ids, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tfcli.data._segment",
            sources=["tfcli/data/_segment.c"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
