"""Run the fuzz targets with atheris (coverage-guided, libFuzzer): `python -m fuzz.run --seconds N`.

Each target runs in its own process for N seconds, seeded from `fuzz/corpus/<target>` (recorded
real sessions, see `fuzz/record.py`) and `fuzz/regressions/<target>` (inputs that once crashed).
A crash is copied into `fuzz/regressions/<target>/` (the test suite replays that directory), and
the target restarts until its time is up. Prints the inputs run and crashes per target; exits 1
when any target crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MAX_LEN = {"protocol": 16384, "ddl": 8192, "versions": 16384}
_RUNS = re.compile(r"stat::number_of_executed_units: (\d+)")
_DONE = re.compile(r"Done (\d+) runs")


def worker(name: str, libfuzzer_args: list[str]) -> None:
    """Inside the child: instrument the proxy's modules, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["proxy"]):
        from fuzz.targets import TARGETS
    atheris.Setup([sys.argv[0], *libfuzzer_args], TARGETS[name])
    atheris.Fuzz()


def run_target(name: str, seconds: float, work: Path, *, keep: bool) -> tuple[int, list[Path]]:
    """Fuzz `name` for `seconds`; returns (inputs run, new regression files)."""
    corpus = work / name / "corpus"
    crashes = work / name / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    regressions = HERE / "regressions" / name
    seeds = [str(d) for d in (HERE / "corpus" / name, regressions) if d.is_dir()]
    deadline = time.monotonic() + seconds
    runs = 0
    found: list[Path] = []
    while (left := deadline - time.monotonic()) > 1:
        args = [
            f"-max_total_time={int(left)}",
            f"-max_len={MAX_LEN[name]}",
            "-timeout=10",
            "-rss_limit_mb=1024",
            "-print_final_stats=1",
            f"-artifact_prefix={crashes}/",
            str(corpus),
            *seeds,
        ]
        cmd = [sys.executable, "-m", "fuzz.run", "--worker", name, "--", *args]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, errors="replace")
        log = proc.stdout + proc.stderr
        counts = _RUNS.findall(log) or _DONE.findall(log)
        runs += int(counts[-1]) if counts else 0
        if proc.returncode == 0:
            break
        new = [p for p in crashes.iterdir() if p.is_file()]
        if not new:
            print(f"{name}: the fuzzer failed without a crash input:\n{log[-3000:]}", file=sys.stderr)
            break
        for artifact in new:
            data = artifact.read_bytes()
            target = regressions / f"{artifact.name.split('-')[0]}-{hashlib.sha1(data).hexdigest()[:16]}"
            if keep:
                regressions.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            found.append(target)
            artifact.unlink()
        print(
            f"{name}: crash kept as {found[-1].relative_to(ROOT)}\n{_traceback(log)}",
            file=sys.stderr,
        )
    return runs, found


def _traceback(log: str) -> str:
    start = log.find("=== Uncaught Python exception: ===")
    return log[start : start + 3000] if start >= 0 else log[-2000:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60, help="per target")
    parser.add_argument("--target", action="append", choices=sorted(TARGETS), help="default: all")
    parser.add_argument("--work", type=Path, help="corpus and crash directory (default: a temp dir)")
    parser.add_argument("--no-keep", action="store_true", help="do not add crashes to fuzz/regressions/")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="fuzz-"))
    failed = False
    try:
        for name in args.target or sorted(TARGETS):
            start = time.monotonic()
            runs, found = run_target(name, args.seconds, work, keep=not args.no_keep)
            took = time.monotonic() - start
            rate = runs / max(took, 1e-9)
            print(f"{name}: {runs} inputs in {took:.0f}s ({rate:.0f}/s), {len(found)} crash(es)", flush=True)
            failed |= bool(found)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
