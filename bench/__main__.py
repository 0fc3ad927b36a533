"""`make bench`: each stage's benchmark in one run, figures printed as tables.

Not part of `make test`: timing goals are measured here, never asserted in tests.
"""

from __future__ import annotations

import sys

from zeroserve.bench import client, export, formats, serve, variants


def main() -> int:
    for bench in (export, formats, serve, client, variants):
        bench.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
