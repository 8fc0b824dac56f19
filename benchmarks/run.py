"""`make bench`: runs every benchmarks/bench_*.py in turn; each prints its own table."""

import pathlib
import platform
import runpy
import sys

import numpy as np


def main():
    here = pathlib.Path(__file__).parent
    print(f"# machine: {platform.machine()}, {platform.processor() or 'cpu'}; python {platform.python_version()}; "
          f"numpy {np.__version__}")
    for script in sorted(here.glob("bench_*.py")):
        print(f"\n## {script.stem}")
        sys.stdout.flush()
        runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
