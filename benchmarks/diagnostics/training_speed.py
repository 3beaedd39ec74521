"""Seconds per training step of the feature-loss CAN in fp32 and in bf16 mixed precision, in one run.

    python benchmarks/diagnostics/training_speed.py [--threads 2] [--widths 32 64] [--update]
    python benchmarks/diagnostics/training_speed.py --device cuda --batch 32        # on a GPU

One step is what ``zoo fit`` does with the shared-data recipes: the CAN's training forward on a
batch of real mixtures (``--batch`` x ``--seconds``), the deep feature loss through the frozen
loss network, backward and Adam. ``bfloat16`` runs the forward and the loss under
``torch.autocast`` as Lightning's ``precision: bf16-mixed`` does (weights, gradients and Adam
stay fp32). The network's body is compiled as the recipes' ``zoo.train.CompileNetwork`` does
(``--eager`` to skip). Each setting is timed as the median of ``--repeats`` steps after
``--warmup`` steps, and reported beside its ratio to fp32 at the same width, measured in the same
process, because absolute times depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from zoo.data import Mixtures  # noqa: E402
from zoo.models.feature_loss import FeatureLossCAN  # noqa: E402

RESULTS = ROOT / "benchmarks" / "diagnostics" / "results" / "training_speed.json"


def real_batch(batch: int, seconds: float) -> dict:
    """Mixtures as the shared-data recipes make them (real speech x real noise)."""
    data = Mixtures(speech=["speech/librispeech-train-clean-100"], noise=["noise/noisex/babble.flac"],
                    val_speech=["speech/librispeech-test-other"], val_noise=["noise/noisex/volvo.flac"],
                    crop_seconds=seconds, batch_size=batch, train_size=batch, val_size=1, max_files=16)
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def seconds_per_step(width: int, dtype: str, batch: dict, device: str, repeats: int, warmup: int,
                     compile_body: bool) -> float:
    torch.manual_seed(0)
    model = FeatureLossCAN(width=width, warmup_epochs=1).to(device)
    model.setup("fit")  # loads the frozen loss network
    model.on_fit_start()
    model.train()
    if compile_body:
        model.network.body.compile()
    optimizer = torch.optim.Adam(model.network.parameters(), lr=1e-4)
    batch = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    for step in range(warmup + repeats):
        sync()
        start = time.perf_counter()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model.loss(model.step(batch), batch)  # what training_step computes
            if isinstance(loss, dict):  # named terms are summed
                loss = sum(loss.values())
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()
        sync()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compiling happens here)")
    parser.add_argument("--eager", action="store_true", help="do not compile the network body")
    parser.add_argument("--update", action="store_true", help=f"write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batch = real_batch(args.batch, args.seconds)
    rows = []
    for width in args.widths:
        fp32 = None
        for dtype in ("float32", "bfloat16"):
            step = seconds_per_step(width, dtype, batch, args.device, args.repeats, args.warmup, not args.eager)
            fp32 = step if dtype == "float32" else fp32
            audio_per_second = args.batch * args.seconds / step
            rows.append({"width": width, "dtype": dtype, "seconds_per_step": round(step, 4),
                         "audio_seconds_per_second": round(audio_per_second, 2), "x_fp32": round(step / fp32, 3)})
            print(f"W={width:3d} {dtype:9s} {step:7.3f} s/step  {audio_per_second:7.1f} s of audio/s  "
                  f"x{step / fp32:.2f} of fp32", flush=True)
    report = {"device": args.device, "threads": args.threads, "batch": args.batch, "seconds": args.seconds,
              "compiled": not args.eager, "repeats": args.repeats, "torch": torch.__version__, "rows": rows}
    if args.update:
        RESULTS.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
