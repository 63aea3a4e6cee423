"""Screenshot a report.html with headless Chromium: the README's picture of the demo's report.

    make demo && python scripts/screenshot_report.py demo-work/store/runs/<run_id>/report.html docs/report.png

(with no arguments: the newest report under demo-work/, written to docs/report.png). Chromium comes
from Debian (`scripts/install_system_deps.sh`); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--virtual-time-budget=5000"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", nargs="?", type=Path, help="report.html (default: the newest under demo-work/)")
    parser.add_argument("out", nargs="?", type=Path, default=REPO / "docs" / "report.png", help="PNG to write")
    parser.add_argument("--size", default="1200,2400", help="window size WIDTH,HEIGHT")
    args = parser.parse_args()
    report = args.report
    if report is None:
        found = sorted((REPO / "demo-work").glob("store/runs/*/report.html"), key=lambda p: p.stat().st_mtime)
        if not found:
            print("no report under demo-work/: run `make demo` first, or name a report.html", file=sys.stderr)
            return 2
        report = found[-1]
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is not installed: run scripts/install_system_deps.sh", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={args.out.resolve()}",
                              f"--window-size={args.size}", report.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    if not args.out.is_file():
        print(out.stderr[-2000:], file=sys.stderr)
        return 1
    print(f"wrote {args.out} from {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
