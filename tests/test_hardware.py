import json
import subprocess
import sys

from llmbench.errors import BadInput
from llmbench.hardware_profiles import load_hardware
from llmbench.config import InlineHardware


def test_hardware_json_reports_machine_and_bandwidth():
    proc = subprocess.run([sys.executable, "-m", "llmbench", "hardware", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["cpu_cores_logical"] >= 1 and info["memory_gb"] > 0 and isinstance(info["gpus"], list)
    assert 0.5 < info["memory_read_bandwidth_gbs"] < 10_000


def test_profiles_by_name_inline_and_unknown():
    hw = load_hardware("cpu-2core")
    assert hw.usd_per_hour > 0 and hw.price_date and hw.price_source
    inline = load_hardware(InlineHardware(name="box", usd_per_hour=3.6, devices=2))
    assert inline.usd_per_second == 0.002
    try:
        load_hardware("quantum-9000")
    except BadInput as exc:
        assert "cpu-2core" in str(exc)
    else:
        raise AssertionError("unknown profile accepted")
