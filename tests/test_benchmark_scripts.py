"""Diagnostic scripts whose figures docs/experiments.md quotes run and measure what they say (on tiny inputs;
they print, and write their results only with --update)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_training_speed_benchmark_times_both_precisions_on_real_mixtures():
    result = subprocess.run([sys.executable, "benchmarks/diagnostics/training_speed.py", "--widths", "8", "--repeats", "1",
                             "--warmup", "1", "--eager", "--seconds", "0.5", "--batch", "2", "--threads", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"W=\s*8 (float32|bfloat16)\s+([\d.]+) s/step .* x([\d.]+) of fp32", result.stdout)
    assert [r[0] for r in rows] == ["float32", "bfloat16"], result.stdout
    assert float(rows[0][2]) == 1.0 and all(float(r[1]) > 0 for r in rows)


def test_clean_passthrough_scores_what_a_model_does_to_clean_speech():
    """The Wiener filter leaves noise-free speech nearly untouched: PESQ-wb near the top of the
    scale and every band within a dB."""
    result = subprocess.run([sys.executable, "benchmarks/diagnostics/clean_passthrough.py", "--models", "wiener", "--every", "35",
                             "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r"wiener: PESQ-wb ([\d.]+) .*SNR ([\d.-]+) dB, band levels (.*)", result.stdout)
    assert found, result.stdout
    assert float(found.group(1)) > 3.5 and float(found.group(2)) > 15
    levels = [float(v) for v in re.findall(r"Hz ([+-][\d.]+)", found.group(3))]
    assert len(levels) == 5 and all(abs(v) < 1.0 for v in levels)
