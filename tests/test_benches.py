"""The benchmarks are code too: each one must at least import, so a refactor that moves a helper they
use (as one did with the bench server helper) fails here rather than on the next person to measure."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_every_bench_module_imports():
    modules = sorted(path.stem for path in BENCH.glob("*.py") if path.stem != "__init__")
    assert len(modules) >= 10
    program = "import importlib\nfor name in %r:\n    importlib.import_module('bench.' + name)\n" % modules
    done = subprocess.run([sys.executable, "-c", program], cwd=BENCH.parent, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
