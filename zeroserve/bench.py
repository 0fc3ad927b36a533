"""`make bench`: each stage's benchmark in one run, figures printed as tables.

Not part of `make test`: timing goals are measured here, never asserted in tests.
"""

from __future__ import annotations

import importlib
import sys


def main() -> int:
    for stage in ("export.bench", "export.bench_formats", "serve.bench", "client.bench", "client.bench_variants"):
        name = f"zeroserve.{stage}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name in (name, name.rsplit(".", 1)[0]):
                continue
            raise
        module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
