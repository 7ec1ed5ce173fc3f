"""Build glue for the framer's optional C scanner (`proxy/protocol/_scan.c`).

Everything else is in pyproject.toml. The extension is optional: without a C compiler or Python
headers the build prints setuptools' "building optional extension failed" warning and installs the
pure-Python framer, which the proxy then logs once at start. The source's SHA-256 goes into the
module, so an editable install whose `_scan.c` changed after the build is not trusted (framer.py
compares and falls back to pure Python with a log line).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from setuptools import Extension, setup

SOURCE = "proxy/protocol/_scan.c"
digest = hashlib.sha256(Path(__file__).with_name("proxy").joinpath("protocol", "_scan.c").read_bytes())

setup(
    ext_modules=[
        Extension(
            "proxy.protocol._scan",
            [SOURCE],
            define_macros=[("SOURCE_SHA256", f'"{digest.hexdigest()}"')],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
