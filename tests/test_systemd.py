"""The shipped unit passes systemd's own checks (where systemd-analyze exists)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "alerter.service"
analyze = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(analyze is None, reason="systemd-analyze is not installed (apt-get install systemd)")


def test_security_exposure_is_at_most_1_5():
    out = subprocess.run([analyze, "security", "--offline=yes", str(UNIT)], capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for alerter\.service: ([0-9.]+)", out.stdout)
    assert match, out.stdout + out.stderr
    assert float(match.group(1)) <= 1.5


def test_verify_is_clean(tmp_path):
    # verify insists that ExecStart exists: point it at this interpreter's alerter
    alerter = Path(sys.executable).parent / "alerter"
    unit = tmp_path / "alerter.service"
    unit.write_text(UNIT.read_text().replace("/opt/alerter/bin/alerter", str(alerter)))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if "alerter.service" in line]
    assert out.returncode == 0 and problems == [], out.stdout + out.stderr
