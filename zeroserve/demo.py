"""`make demo`: the main job end to end on the embedded default.

Each step is a real `zeroserve` command; a model whose course file is missing is
reported as skipped, naming the file and where to put it.
"""

from __future__ import annotations

import subprocess
import sys

STEPS = [
    ["train", "all"],
]


def main() -> int:
    failed = 0
    for step in STEPS:
        print(f"\n$ zeroserve {' '.join(step)}", flush=True)
        rc = subprocess.call([sys.executable, "-m", "zeroserve", *step])
        if rc:
            print(f"step `zeroserve {' '.join(step)}` exited {rc}", flush=True)
            failed = failed or rc
            break
    return failed


if __name__ == "__main__":
    sys.exit(main())
