"""A new user's path: `mdh demo` in an empty folder, then the original guide's examples
(examples/*.py) against its data, each in a fresh process; and `import mdh_lib` without
Dagster."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO  # the demo_folder fixture (one `mdh demo` per session) is in conftest

EXAMPLES = sorted((REPO / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_on_demo_data(demo_folder, script):
    folder, env = demo_folder
    run = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert run.stdout.strip()


def test_import_mdh_lib_does_not_import_dagster():
    code = ("import sys, mdh_lib; from mdh_lib import DataClient, CandleDataReader, TickDataReader, "
            "HFTFeaturesReader, MFTFeaturesReader, BigQueryClient; assert 'dagster' not in sys.modules, 'dagster'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
