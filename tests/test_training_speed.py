"""`benchmarks/training_speed.py` times real training steps in fp32 and bf16 mixed precision."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_training_speed_benchmark_times_both_precisions_on_real_mixtures():
    result = subprocess.run([sys.executable, "benchmarks/training_speed.py", "--widths", "8", "--repeats", "1",
                             "--warmup", "1", "--eager", "--seconds", "0.5", "--batch", "2", "--threads", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"W=\s*8 (float32|bfloat16)\s+([\d.]+) s/step .* x([\d.]+) of fp32", result.stdout)
    assert [r[0] for r in rows] == ["float32", "bfloat16"], result.stdout
    assert float(rows[0][2]) == 1.0 and all(float(r[1]) > 0 for r in rows)
