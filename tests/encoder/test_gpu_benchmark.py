"""The GPU benchmark script (benchmarks/gpu_encode.py) runs end to end at tiny shapes on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_benchmark_smoke_run_on_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_encode.py"), "--tiny", "--device", "cpu",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(r["batch"], r["length"]) for r in report["fixed"]] == [(8, 16), (16, 16), (8, 32), (16, 32)]
    assert all(r["tokens_per_s"] > 0 and r["tflops"] > 0 and r["mfu"] is None for r in report["fixed"])
    assert report["workload"]["passages"] == 24 and report["workload"]["passages_per_s"] > 0
    assert report["search"]["n"] == 5000 and report["search"]["torch_ms_per_batch"] > 0
    assert "| batch | ran | length |" in done.stdout
