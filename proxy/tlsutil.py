"""TLS settings for both hops, and throwaway TLS material for tests and `electric-proxy serve`.

Both contexts refuse anything older than TLS 1.2 and, for TLS 1.2, offer only forward-secret AEAD
suites (TLS 1.3 suites are all of that kind already). Compression and renegotiation are off.

We shell out to the `openssl` CLI instead of depending on `cryptography`: it is present on every
CI image we use, and a dev certificate is not worth a compiled dependency.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from proxy.errors import ConfigError

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
# TLS 1.2 suites: ECDHE/DHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305.
TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return context


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The context the proxy terminates client TLS with."""
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cert_file, key_file)
    return context


def client_context(*, cafile: str | None, verify: bool, check_hostname: bool) -> ssl.SSLContext:
    """The context the proxy opens upstream TLS with (libpq's sslmode semantics decide the flags)."""
    context = _harden(ssl.create_default_context(cafile=cafile))
    context.check_hostname = check_hostname and verify
    if not verify:
        context.verify_mode = ssl.CERT_NONE
    return context


def certificate_der(cert_file: str) -> bytes:
    """The first certificate of a PEM file (the leaf, in a chain file), as DER."""
    text = Path(cert_file).read_text(encoding="ascii", errors="replace")
    end = "-----END CERTIFICATE-----"
    first = text[: text.index(end) + len(end)] if end in text else text
    return ssl.PEM_cert_to_DER_cert(first[first.index("-----BEGIN CERTIFICATE-----") :])


def _san(common_name: str, names: Sequence[str] | None) -> str:
    """subjectAltName covering loopback unless `names` says otherwise: clients verify SAN, not CN."""
    names = ["DNS:localhost", "IP:127.0.0.1"] if names is None else list(names)
    try:
        ipaddress.ip_address(common_name)
        extra = f"IP:{common_name}"
    except ValueError:
        extra = f"DNS:{common_name}"
    if extra not in names:
        names.append(extra)
    return ",".join(names)


def generate_self_signed_cert(
    dir: Path, common_name: str = "localhost", *, alt_names: Sequence[str] | None = None
) -> tuple[Path, Path]:
    """Write `cert.pem` and `key.pem` (EC P-256, valid one day) into `dir`; return their paths.

    The certificate is self-signed, so it doubles as its own root for `sslrootcert`.
    `alt_names` ("DNS:name", "IP:addr") replaces the loopback names; the CN is always added.
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
        "-addext", f"subjectAltName={_san(common_name, alt_names)}",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigError(f"openssl failed to generate a certificate: {done.stderr.strip()}")
    # Postgres and most TLS servers refuse a private key readable by others.
    os.chmod(key, 0o600)
    return cert, key
