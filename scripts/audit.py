"""Audit requirements.lock for known vulnerabilities; exit 1 on any finding.

1. pip-audit (`--strict`, PyPI's vulnerability data): the full audit, on any network that reaches
   PyPI's JSON API for each release (https://pypi.org/pypi/NAME/VERSION/json).
2. Some networks reach only PyPI's package index and project pages (https://pypi.org/pypi/NAME/json):
   this project's CI is one. There, pip-audit finds no release page and would audit nothing, so
   this falls back to the project pages, which carry the advisories (OSV, from the PyPA advisory
   database) of each project's latest release, and the release files' yank status:
   - a locked release that was yanked fails the audit (yanks are how broken and unsafe releases are
     withdrawn);
   - a locked release that is the latest fails on any advisory listed for it;
   - an older locked release fails on an advisory of the latest release that no release has fixed
     yet (it affects every version);
   - otherwise the older release is reported as not fully audited, with the version that would be.
   Keeping the lock on the latest releases keeps the fallback a full audit.

Standard library only: it runs before and apart from the project's environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PROJECT_PAGE = "https://pypi.org/pypi/{name}/json"
NOT_ON_PYPI = "Dependency not found on PyPI"


def locked(path: Path) -> list[tuple[str, str]]:
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins.append((name.strip(), version.strip()))
    return pins


def pip_audit(pip_audit_bin: str, lock: Path) -> tuple[int, str]:
    cmd = [pip_audit_bin, "--strict", "--vulnerability-service", "pypi", "--no-deps", "--disable-pip"]
    done = subprocess.run([*cmd, "--requirement", str(lock)], capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def project_page(name: str) -> dict[str, Any]:
    with urllib.request.urlopen(PROJECT_PAGE.format(name=name), timeout=30) as response:
        page: dict[str, Any] = json.load(response)
        return page


def check(name: str, version: str, page: dict[str, Any]) -> tuple[list[str], str | None]:
    """(findings, note) for one pin, from its project page."""
    latest = page["info"]["version"]
    files = page.get("releases", {}).get(version)
    if files is None:
        return [f"{name} {version}: no such release on PyPI"], None
    findings = [
        f"{name} {version}: yanked ({f.get('yanked_reason') or 'no reason given'})"
        for f in files[:1]
        if f.get("yanked")
    ]
    for advisory in page.get("vulnerabilities") or []:
        ident = advisory.get("id", "?")
        if version == latest or not advisory.get("fixed_in"):
            findings.append(
                f"{name} {version}: {ident} {advisory.get('summary') or advisory.get('details', '')[:100]}"
            )
    note = None if version == latest else f"{name} {version}: not fully audited offline (latest is {latest})"
    return findings, note


def fallback(pins: list[tuple[str, str]]) -> int:
    findings: list[str] = []
    notes: list[str] = []
    for name, version in pins:
        try:
            found, note = check(name, version, project_page(name))
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            findings.append(f"{name} {version}: cannot read its PyPI project page ({exc})")
            continue
        findings += found
        notes += [note] if note else []
    for note in notes:
        print(f"note: {note}")
    for finding in findings:
        print(f"VULNERABLE: {finding}")
    print(f"audited {len(pins)} locked packages from PyPI project pages: {len(findings)} finding(s)")
    return 1 if findings else 0


def main() -> int:
    pip_audit_bin, lock = sys.argv[1], Path(sys.argv[2])
    code, output = pip_audit(pip_audit_bin, lock)
    if code == 0:
        print(output.strip())
        return 0
    if NOT_ON_PYPI not in output:
        print(output.strip())  # a real finding, or pip-audit itself failed: either fails the audit
        return code or 1
    print("pip-audit cannot reach PyPI's per-release vulnerability data here; using project pages")
    return fallback(locked(lock))


if __name__ == "__main__":
    sys.exit(main())
