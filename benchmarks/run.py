"""`make bench`: runs every benchmarks/bench_*.py in turn; each prints its own table."""

import pathlib
import platform
import runpy
import sys

import numpy as np


def processor_name():
    """The CPU's model name from /proc/cpuinfo on Linux (platform.processor() is often empty there)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0]} x {len(names)}" if names else platform.processor() or "unknown cpu"


def main():
    here = pathlib.Path(__file__).parent
    print(f"# machine: {platform.machine()}, {processor_name()}; python {platform.python_version()}; "
          f"numpy {np.__version__}")
    for script in sorted(here.glob("bench_*.py")):
        print(f"\n## {script.stem}")
        sys.stdout.flush()
        runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
