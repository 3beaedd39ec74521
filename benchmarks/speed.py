"""Real-time factor and peak memory of every model beside the DeepFilterNet3 peer, in one run.

    python benchmarks/speed.py [--threads 2] [--seconds 30] [--update]
    python benchmarks/speed.py --device cuda --dtype bfloat16 --batch 32   # on a GPU
    python benchmarks/speed.py --models --can-variants [--update]      # fast CAN inference paths

All systems enhance the same real speech (VoiceBank-DEMAND subset files joined to ``--seconds``)
through the same ``model.enhance`` path users call, in this process, with the same thread
count. ``--batch N`` enhances N copies at once as the channels of one input (the path runs
channels as one batch), ``--dtype bfloat16`` under ``torch.autocast``; the real-time factor then
counts all N signals. The DeepFilterNet3 peer always runs on the CPU (its C runtime), one signal
at a time; the real-time factor (processing time / audio duration, median of ``--repeats``) is
reported beside its ratio to DeepFilterNet3's, measured in the same run, because absolute times
depend on the machine and its load. Peak memory is measured in a fresh subprocess per system
(resident-set high-water mark minus the resident set after loading) on 60 s of audio.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from zoo.audio import read_audio  # noqa: E402
from zoo.data.files import DATA_ROOT  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "speed.json"
REFERENCE = "deepfilternet3"
#: the released network's other CPU paths, beside its default (``runtime: auto``, the fp32 fast path)
VARIANTS = ["feature-loss-can:runtime=bf16", "feature-loss-can:runtime=torch"]


def speech(seconds: float) -> torch.Tensor:
    files = sorted((DATA_ROOT / "voicebank-demand-subset" / "noisy_testset_wav").glob("*.wav"))
    pieces, total = [], 0
    for path in files:
        wave, _ = read_audio(path)
        pieces.append(wave)
        total += wave.shape[-1]
        if total >= seconds * 16000:
            break
    return torch.cat(pieces, dim=-1)[..., : int(seconds * 16000)]


def real_time_factor(model, wave: torch.Tensor, repeats: int, batch: int = 1, device: str = "cpu",
                     dtype: str = "float32") -> float:
    """Median seconds of processing per second of audio, over ``batch`` signals enhanced at once."""
    import contextlib

    waves = wave.reshape(1, -1).expand(batch, -1).contiguous() if batch > 1 else wave
    autocast = (torch.autocast(device_type=device, dtype=getattr(torch, dtype)) if dtype != "float32"
                else contextlib.nullcontext())
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with autocast:
        model.enhance(waves[..., :16000], 16000)  # warm-up: allocations, kernels, library loading
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.enhance(waves, 16000)
            sync()
            times.append(time.perf_counter() - start)
    return statistics.median(times) / (batch * wave.shape[-1] / 16000)


_MEMORY = """
import sys, torch
sys.path.insert(0, {root!r})
from benchmarks.speed import speech
from zoo.evaluate import load_system
torch.set_num_threads({threads})
model = load_system({name!r})
wave = speech(60)
def status_mb(field):
    # VmHWM, not ru_maxrss: across fork+exec ru_maxrss keeps the parent's peak
    return int(next(l for l in open('/proc/self/status') if l.startswith(field)).split()[1]) / 1024
model.enhance(wave[..., :16000], 16000)
before = status_mb('VmRSS')
model.enhance(wave, 16000)
print(status_mb('VmHWM') - before)
"""


def can_variant_name() -> str:
    """The published W=64 CAN with batch normalisation (streamable with folded statistics)."""
    import zoo

    names = zoo.list_models()
    return "feature-loss-can-cpu" if "feature-loss-can-cpu" in names else "feature-loss-can"


def can_variants(name: str, wave: torch.Tensor, repeats: int, threads: int) -> dict:
    """Real-time factor of each inference path of one CAN through ``model.enhance`` (the network's
    forward replaced by the path), with its SNR against the model's own fp32 output on the same
    speech: the reference eval forward, the same under bf16 autocast, the streaming runtime
    (``zoo.models.can_runtime``) in fp32 and bf16 with one worker (intra-op threads) or one
    worker per thread (time pieces), the folded network under ``torch.compile``, and ONNX Runtime
    in fp32 and static int8."""
    from zoo.evaluate import load_system
    from zoo.models.can_runtime import CANRuntime, ONNXRuntimeCAN, folded_module

    model = load_system(name)
    network = model.network
    reference = model.enhance(wave, 16000)

    def snr(out):
        return float(10 * torch.log10(reference.pow(2).sum() / (reference - out).pow(2).sum()))

    def measure(path, dtype="float32"):
        if path is not None:
            network.forward = lambda w, *args: path(w)
        try:
            out = model.enhance(wave, 16000)
            if dtype != "float32":
                with torch.autocast("cpu", dtype=getattr(torch, dtype)):
                    out = model.enhance(wave, 16000)
            return {"rtf": real_time_factor(model, wave, repeats, dtype=dtype), "snr_db": snr(out)}
        finally:
            network.__dict__.pop("forward", None)

    rows = {"eval forward (fp32)": measure(None), "eval forward, autocast bf16": measure(None, "bfloat16")}
    for mode in ("fp32", "bf16"):
        rows[f"runtime {mode}, 1 worker x {threads} threads"] = measure(
            CANRuntime.from_network(network, mode=mode, workers=1))
        rows[f"runtime {mode}, {threads} workers x 1 thread"] = measure(
            CANRuntime.from_network(network, mode=mode, workers=threads))
    fp32 = CANRuntime.from_network(network)
    compiled, scale = torch.compile(folded_module(fp32), dynamic=True), network.wave_scale
    rows["torch.compile (inductor), folded fp32"] = measure(lambda w: compiled((w * scale)[:, None])[:, 0] / scale)
    try:
        rows["onnxruntime fp32"] = measure(ONNXRuntimeCAN(fp32, threads=threads))
        calibration = speech(60)[..., -16000 * 20:].reshape(4, -1)  # other speech than the timed
        rows["onnxruntime int8 (static, QDQ)"] = measure(ONNXRuntimeCAN(fp32, "int8", calibration, threads))
    except ImportError as error:
        print(f"onnxruntime rows skipped: {error} (pip install 'zoo[onnx]')", file=sys.stderr)
    for label, row in rows.items():
        print(f"{name} [{label}]: RTF {row['rtf']:.2e}, SNR {row['snr_db']:.1f} dB", file=sys.stderr)
    return {"model": name, "rows": rows}


def variants_markdown(report: dict) -> str:
    variants = report["can_variants"]
    lines = [f"| {variants['model']} inference path | real-time factor | x {REFERENCE}'s time (mean of its RTF "
             f"before and after: {variants['reference_rtf']['before']:.2g}, {variants['reference_rtf']['after']:.2g}) | "
             "SNR vs fp32 eval forward (dB) |", "|---|---|---|---|"]
    for label, row in variants["rows"].items():
        snr = "exact" if row["snr_db"] > 100 else f"{row['snr_db']:.1f}"
        lines.append(f"| {label} | {row['rtf']:.2g} | {row['rtf_ratio']:.2f} | {snr} |")
    return "\n".join(lines)


def peak_memory_mb(name: str, threads: int) -> float:
    out = subprocess.run([sys.executable, "-c", _MEMORY.format(root=str(ROOT), name=name, threads=threads)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def runtime_snr_db(name: str, model, wave: torch.Tensor) -> float | None:
    """For a CAN (``NAME`` or ``NAME:runtime=...``): SNR (dB) of its ``enhance`` output against the
    same model's ``runtime=torch`` output (the network's own forward), on the timed speech."""
    from zoo.evaluate import load_system

    if getattr(model, "runtime", None) is None or getattr(model, "runtime") == "torch":
        return None
    base = name.split(":")[0]
    with torch.inference_mode():
        reference = load_system(f"{base}:runtime=torch").enhance(wave, 16000)
        out = model.enhance(wave, 16000)
    error = (reference - out).pow(2).sum()
    return float("inf") if error == 0 else float(10 * torch.log10(reference.pow(2).sum() / error))


def markdown(report: dict) -> str:
    lines = [f"| system | real-time factor | seconds of audio per second | x {REFERENCE}'s time | "
             "peak memory beyond the model (MB, 60 s input) | SNR to runtime=torch (dB) |",
             "|---|---|---|---|---|---|"]
    for name, row in report["systems"].items():
        peak = "-" if row.get("peak_mb") is None else f"{row['peak_mb']:.0f}"
        snr = "-" if row.get("snr_db") is None else f"{row['snr_db']:.1f}"
        lines.append(f"| {name} | {row['rtf']:.2g} | {1 / row['rtf']:.0f} | {row['rtf_ratio']:.2f} | {peak} | {snr} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the zoo's models; the peer stays on the CPU)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch", type=int, default=1, help="signals enhanced at once (as channels)")
    parser.add_argument("--can-variants", action="store_true",
                        help="also time the CAN inference paths (runtime fp32/bf16, autocast, ONNX Runtime); "
                             "with --update they go to results/speed-can-variants.json, not speed.json/README")
    parser.add_argument("--update", action="store_true", help="write the results file and the README speed table")
    args = parser.parse_args()

    import zoo
    from zoo.evaluate import load_system

    torch.set_num_threads(args.threads)
    wave = speech(args.seconds)
    names = [*(args.models if args.models is not None else zoo.list_models() + VARIANTS), REFERENCE]
    systems = {}
    for name in names:
        model = load_system(name)
        on_device = name != REFERENCE and isinstance(model, torch.nn.Module)
        if on_device:
            model.to(args.device)
        setting = (args.batch, args.device, args.dtype) if on_device else (1, "cpu", "float32")
        systems[name] = {"rtf": real_time_factor(model, wave, args.repeats, *setting),
                         "batch": setting[0], "device": setting[1], "dtype": setting[2],
                         "peak_mb": peak_memory_mb(name, args.threads) if setting[1] == "cpu" else None,
                         "snr_db": runtime_snr_db(name, model, wave) if on_device and setting[1] == "cpu" else None}
        print(f"{name}: RTF {systems[name]['rtf']:.2e} on {setting[1]}", file=sys.stderr)
    variants = (can_variants(can_variant_name(), wave, args.repeats, args.threads)
                if args.can_variants and args.device == "cpu" else None)
    for row in systems.values():
        row["rtf_ratio"] = row["rtf"] / systems[REFERENCE]["rtf"]
    report = {"device": args.device, "dtype": args.dtype, "batch": args.batch, "threads": args.threads,
              "seconds": args.seconds, "repeats": args.repeats, "torch": torch.__version__, "systems": systems}
    if variants is not None:
        # the variants take minutes: the peer again after them, and their ratios to the mean of both
        # runs, so that a change of machine load over the run shows (and is shared out) in the file
        after = real_time_factor(load_system(REFERENCE), wave, args.repeats)
        variants["reference_rtf"] = {"before": systems[REFERENCE]["rtf"], "after": after}
        for row in variants["rows"].values():
            row["rtf_ratio"] = row["rtf"] / ((systems[REFERENCE]["rtf"] + after) / 2)
        report["can_variants"] = variants
    table = markdown(report)
    print(table)
    if variants is not None:
        print()
        print(variants_markdown(report))
    if args.update:  # a quick run (other models, another dtype) leaves the published figures alone
        results = RESULTS if args.device == "cpu" else RESULTS.with_name(f"speed-{args.device}.json")
        results.parent.mkdir(parents=True, exist_ok=True)
        if variants is not None:  # its own file: the systems table and the README stay as published
            results = results.with_name("speed-can-variants.json")
            results.write_text(json.dumps(report, indent=2) + "\n")
            return
        results.write_text(json.dumps(report, indent=2) + "\n")
        update_readme(report, table)


def update_readme(report: dict, table: str) -> None:
    """One README block per device (``speed-table`` for the CPU, ``speed-table-cuda`` ...); a
    device's first run adds its block after the CPU one."""
    readme = ROOT / "README.md"
    tag = "speed-table" if report["device"] == "cpu" else f"speed-table-{report['device']}"
    setting = (f"{report['device'].upper()}, {report['dtype']}, batches of {report['batch']}"
               if report["device"] != "cpu" else "CPU")
    block = (f"<!-- {tag}: written by benchmarks/speed.py --update -->\n{setting}, {report['threads']} threads, "
             f"{report['seconds']:.0f} s of 16 kHz speech, median of {report['repeats']}:\n\n{table}\n<!-- /{tag} -->")
    text = readme.read_text()
    pattern = rf"<!-- {tag}:.*?<!-- /{tag} -->"
    if re.search(pattern, text, flags=re.S):
        text = re.sub(pattern, lambda _: block, text, flags=re.S)
    elif "<!-- /speed-table -->" in text:
        text = text.replace("<!-- /speed-table -->", "<!-- /speed-table -->\n\n" + block, 1)
    else:
        sys.exit("README.md has no <!-- speed-table --> block")
    readme.write_text(text)

if __name__ == "__main__":
    main()
