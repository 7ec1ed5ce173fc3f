"""`electric-proxy health [--ready] [--wait SECONDS]`: ask a running proxy how it is.

For container HEALTHCHECKs and init scripts: it reads the same configuration as `serve` (file,
environment, flags) to find the metrics address, asks `/healthz` (or `/readyz` with `--ready`)
and exits 0 when the answer is 200, 1 otherwise, with the proxy's reason on stderr. With metrics
disabled it can only check that the client listener accepts connections. Nothing beyond the
standard library: an image needs no curl.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.error
import urllib.request
from functools import partial

HELP = "exit 0 when the running proxy is alive (or ready, with --ready)"
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from proxy.cli import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--ready", action="store_true", help="check readiness (/readyz), not liveness")
    parser.add_argument(
        "--wait", metavar="SECONDS", type=float, default=0.0, help="keep asking for up to SECONDS"
    )
    parser.add_argument("--timeout", metavar="SECONDS", type=float, default=3.0, help="per request")


def probe_url(host: str, port: int, ready: bool) -> str:
    host = _LOOPBACK.get(host, host)  # a wildcard bind is reached on loopback
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/{'readyz' if ready else 'healthz'}"


def ask(url: str, timeout: float) -> tuple[bool, str]:
    """(healthy, the proxy's one-line answer or why it could not be asked)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200, response.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as exc:
        return False, exc.read().decode(errors="replace").strip() or f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"cannot reach {url}: {reason}"


def accepts(host: str, port: int, timeout: float) -> tuple[bool, str]:
    """Whether the client listener accepts a TCP connection (when metrics are disabled)."""
    host = _LOOPBACK.get(host, host)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return False, f"metrics disabled, and the listener at {host}:{port} refuses connections: {exc}"
    return True, f"metrics disabled; the listener at {host}:{port} accepts connections"


def run(args: argparse.Namespace) -> int:
    from proxy.cli import config_from_args

    config = config_from_args(args)
    if config.metrics.enabled:
        url = probe_url(config.metrics.address, config.metrics.port, args.ready)
        probe = partial(ask, url, args.timeout)
    else:
        # No health endpoint: the most that can be said is that the listener accepts connections.
        probe = partial(accepts, config.listen.address, config.listen.port, args.timeout)
    deadline = time.monotonic() + max(0.0, args.wait)
    while True:
        healthy, answer = probe()
        if healthy or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    print(f"electric-proxy: {answer}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1
