"""The fault suite at full size: volume lifecycles while a share of cloud requests fails, then the
fault scenarios, with figures printed.

    python benchmarks/faults.py                 # the CI size: 40 lifecycles
    python benchmarks/faults.py --full          # 500 lifecycles, 8 at a time, then every scenario
    python benchmarks/faults.py --lifecycles 100 --concurrency 6 --fail-every 4

Runs as root (loop devices, mounts). Exits non-zero when a lifecycle fails, a checksum differs or the
census at the emulator finds anything left.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.load import LoadReport, run_load  # noqa: E402
from tests.faults.support import installation  # noqa: E402

CI_LIFECYCLES = 40
FULL_LIFECYCLES = 500


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--full", action="store_true", help=f"{FULL_LIFECYCLES} lifecycles, then the scenarios"
    )
    parser.add_argument("--lifecycles", type=int, help="how many volume lifecycles")
    parser.add_argument("--concurrency", type=int, help="lifecycles at a time")
    parser.add_argument("--fail-every", type=int, default=5, help="one cloud request in N fails (5: 20%%)")
    parser.add_argument("--scenarios", action="store_true", help="also run the fault scenarios (pytest)")
    parser.add_argument("--op-seconds", type=float, default=0.05, help="the emulator's transition time")
    return parser.parse_args(argv)


async def load(args: argparse.Namespace) -> LoadReport:
    lifecycles = args.lifecycles or (FULL_LIFECYCLES if args.full else CI_LIFECYCLES)
    concurrency = args.concurrency or (8 if args.full else 4)
    with installation("csx-bench-faults-", op_seconds=args.op_seconds) as cluster:
        return await run_load(cluster, lifecycles, concurrency, every=args.fail_every)


def scenarios() -> int:
    import pytest

    suite = ROOT / "tests/faults"
    argv = [str(suite), "-q", "-rxXfE", f"--ignore={suite / 'test_load.py'}"]
    return int(pytest.main(argv))


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        sys.stderr.write("benchmarks/faults.py attaches loop devices and mounts: run it as root\n")
        return 2
    # The driver processes are `python -m csi_xloud`: they find the package from any folder.
    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))
    report = asyncio.run(load(args))
    print("== load under failing cloud requests ==")
    print("\n".join(report.lines()))
    ok = (
        not report.failures
        and report.intact == report.lifecycles
        and report.orphans is not None
        and report.orphans.total == 0
    )
    if args.full or args.scenarios:
        print("== fault scenarios ==", flush=True)
        ok = scenarios() == 0 and ok
    print("RESULT:", "ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
