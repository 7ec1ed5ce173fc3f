"""Throwaway TLS material for tests and `electric-proxy serve` in dev mode.

We shell out to the `openssl` CLI instead of depending on `cryptography`: it is present on every
CI image we use, and a dev certificate is not worth a compiled dependency.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

from proxy.errors import ConfigError

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"


def _san(common_name: str) -> str:
    """subjectAltName covering loopback: clients verify SAN, not CN, with verify-full."""
    names = ["DNS:localhost", "IP:127.0.0.1"]
    try:
        ipaddress.ip_address(common_name)
        extra = f"IP:{common_name}"
    except ValueError:
        extra = f"DNS:{common_name}"
    if extra not in names:
        names.append(extra)
    return ",".join(names)


def generate_self_signed_cert(dir: Path, common_name: str = "localhost") -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` (EC P-256, valid one day) into `dir`; return their paths.

    The certificate is self-signed, so it doubles as its own root for `sslrootcert`.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ConfigError("cannot generate a TLS certificate: the `openssl` command is not on PATH")
    dir.mkdir(parents=True, exist_ok=True)
    cert, key = dir / CERT_NAME, dir / KEY_NAME
    # EC rather than RSA: key generation is instant, which matters in test setup.
    cmd = [
        openssl, "req", "-x509", "-batch", "-nodes",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(key), "-out", str(cert),
        "-days", "1",
        "-subj", f"/CN={common_name}",
        "-addext", f"subjectAltName={_san(common_name)}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"openssl failed to generate a certificate: {done.stderr.strip()}")
    # Postgres and most TLS servers refuse a private key readable by others.
    os.chmod(key, 0o600)
    return cert, key
