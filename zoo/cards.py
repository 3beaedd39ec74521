"""Model cards: the README.md of each Hub repository, rendered from the registry and measured scores.

The YAML header is built with huggingface_hub's ``ModelCardData``/``EvalResult`` so that the Hub
parses ``model-index`` as it does for any model; the scores come from a benchmark results file,
never typed by hand, so a card cannot disagree with the benchmark that produced it.
"""
from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .hub import CARD_NAME, read_config
from .registry import ModelEntry

# metric key in results files -> (Hub metric type, human name)
METRICS = {
    "pesq_wb": ("pesq", "PESQ-wb"),
    "stoi": ("stoi", "STOI"),
    "si_sdr": ("si-sdr", "SI-SDR (dB)"),
    "snr": ("snr", "SNR (dB)"),
    "csig": ("csig", "CSIG"),
    "cbak": ("cbak", "CBAK"),
    "covl": ("covl", "COVL"),
}


def card_results(report: dict, name: str) -> list[dict]:
    """The blocks of a benchmark report (``benchmarks/results/quality.json``) a card shows, for
    every data set the model was scored on: its own scores first, then every other system of the
    same run (the unprocessed input, the baselines, the peers), so that a card reader sees the
    comparison that the numbers only mean something in. Only the model's own go to model-index."""
    blocks = []
    for data in report["datasets"]:
        if name not in data["means"]:
            continue
        for system in [name, *(s for s in data["means"] if s != name)]:
            blocks.append({**{k: data[k] for k in ("dataset", "dataset_type", "split")}, "system": system,
                           "scores": data["means"][system]})
    return blocks


def eval_results(results: list[dict]) -> list[EvalResult]:
    """``results``: [{"dataset", "dataset_type", "split", "system", "scores": {metric: value}}]."""
    out = []
    for block in results:
        for key, value in block["scores"].items():
            if key not in METRICS:
                continue
            metric_type, metric_name = METRICS[key]
            out.append(EvalResult(
                task_type="audio-to-audio", task_name="Speech enhancement",
                dataset_type=block["dataset_type"], dataset_name=block["dataset"], dataset_split=block.get("split"),
                metric_type=metric_type, metric_name=metric_name, metric_value=round(float(value), 4),
            ))
    return out


def _data_summary(data: dict | None) -> str:
    if not data:
        return "not recorded"
    args = data.get("init_args", {})
    lists = "; ".join(f"{key}: {', '.join(map(str, args[key]))}" for key in ("speech", "noise", "val_speech", "val_noise")
                      if isinstance(args.get(key), list))
    keys = ("root", "snr_db", "gain_db", "noise_tilt_db", "crop_seconds", "batch_size", "train_size")
    other = ", ".join(f"{key}={args[key]}" for key in keys if args.get(key) is not None)
    return f"`{data.get('class_path') or '?'}` ({other})" + (f"; {lists}" if lists else "")


def _data_changes(changes: list[dict]) -> str:
    """``from step 7500, noise_tilt_db None -> [-6.0, 0.0]``: when a resumed session changed the data."""
    return "; ".join(f"from step {entry['from_step']}, "
                     + ", ".join(f"{key} {before} -> {after}" for key, (before, after) in entry["changes"].items())
                     for entry in changes)


def _decay_segments(decay: dict) -> str:
    """``to 1e-04 from step 7000 to 10000, then to 2e-05 from step 14500 to 16500``: the segments of
    a ``LearningRateDecay`` (one value each, or lists that chain)."""
    def listed(value):
        return list(value) if isinstance(value, (list, tuple)) else [value]

    segments = zip(listed(decay["final_lr"]), listed(decay["start_step"]), listed(decay["end_step"]))
    return ", then ".join(f"to {final:g} from step {start} to {end}" for final, start, end in segments)


def _lineage(started: dict) -> str:
    """``feature-loss-can (W=32, 16589 steps, 10.23 h on CPU ...), widened to W=64``: what a run
    started from (``zoo.train.StartFrom``), and what that started from, in turn."""
    details = [f"W={started['width']}"] if "width" in started else []
    if started.get("global_step") is not None:
        details.append(f"{started['global_step']} steps")
    where = f" on {started['hardware']}" if started.get("hardware") else ""
    if "hours" in started or where:
        details.append((f"{started['hours']:.2f} h" if "hours" in started else "trained") + where)
    text = f"`{started.get('model')}`" + (f" ({', '.join(details)})" if details else "")
    if started.get("recipe"):
        text += f", recipe `{started['recipe']}`"
    if started.get("data_changes"):
        text += f" (data changes: {_data_changes(started['data_changes'])})"
    if started.get("widened_to"):
        text += f", widened to W={started['widened_to']} (Net2WiderNet: the same output) before this run"
    if started.get("started_from"):
        text += "; that run started from " + _lineage(started["started_from"])
    return text


def lineage_hours(record: dict) -> float | None:
    """Training hours of a run and of every run it started from, or None if one is not recorded."""
    hours, link = 0.0, record
    while link:
        if "hours" not in link:
            return None
        hours, link = hours + link["hours"], link.get("started_from")
    return hours


def training_section(folder) -> str:
    """What a card must say about training (data, hours, hardware), from the ``training.json``
    that ``python -m zoo.card_from_checkpoint`` wrote from the run's own checkpoint and logs."""
    path = Path(folder) / "training.json"
    if not path.is_file():
        return ""
    record = json.loads(path.read_text())
    changes = record.get("data_changes") or []
    lines = [f"- Recipe: `{record.get('recipe') or 'not recorded'}`",
             f"- Data{' (at the last step)' if changes else ''}: {_data_summary(record.get('data'))}",
             *([f"- Data changes: {_data_changes(changes)}"] if changes else []),
             f"- Steps: {record.get('global_step')} ({record.get('epochs', 0) + 1} epochs)",
             *([f"- Started from: {_lineage(record['started_from'])}"] if record.get("started_from") else []),
             _training_time(record),
             f"- Hardware: {record.get('hardware', 'not recorded')}"]
    rate = record.get("learning_rate")
    if rate:
        decay = rate.get("decay")
        lines.append(f"- Learning rate (Adam): {rate['initial']:g}" + (
            f", decayed geometrically {_decay_segments(decay)} (`zoo.train.LearningRateDecay`)" if decay else "") + (
            f"; {rate['last']:.3g} at the last step" if "last" in rate else ""))
    if "last_val_si_sdr_db" in record:
        reference = (f" (unprocessed input: {record['val_input_si_sdr_db']:.2f} dB)"
                     if "val_input_si_sdr_db" in record else "")
        start = (record.get("finetune") or {}).get("val_start_si_sdr_db")
        started = f"; the model it started from: {start:.2f} dB" if start is not None else ""
        lines.append(f"- Last validation SI-SDR (held-out speakers and noises): {record['last_val_si_sdr_db']:.2f} dB"
                     + reference + started)
    if record.get("note"):
        lines.append(f"- Note: {record['note']}")
    figure = "\n\n![training loss and validation SI-SDR](training.png)" if (path.parent / "training.png").is_file() else ""
    return "\n## Training\n\n" + "\n".join(lines) + figure + "\n"


def _training_time(record: dict) -> str:
    if "hours" not in record:
        return "- Training time: not recorded"
    total = lineage_hours(record) if record.get("started_from") else None
    return f"- Training time: {record['hours']:.2f} h" + (
        f" in this run, {total:.2f} h with the training it started from" if total is not None else "")


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def card_license(config: dict) -> str:
    """The Hub license tag: MIT for weights converted from, or derived from, the MIT release they
    name; "other" for another release (its terms are on the card); apache-2.0 for the zoo's own."""
    release = config.get("converted_from") or config.get("derived_from")
    if not release:
        return "apache-2.0"
    return "mit" if "MIT" in f"{release.get('release', '')} {release.get('license', '')}" else "other"


def derivation_section(config: dict) -> str:
    """What weights made from someone else's release (a fine-tune of it, or a weight-space mix with
    one, ``zoo interpolate``) must say: the release, its license, the source files, how they were made."""
    release = config.get("derived_from")
    made = config.get("interpolated")
    if not release and not made:
        return ""
    lines = []
    if made:
        lines.append(f"- Made by `zoo interpolate` (WiSE-FT, Wortsman et al. 2022, Eq. 1): "
                     f"{1 - made['alpha']:g} x `{made['start']['model']}` (sha256 `{made['start']['weights_sha256']}`) "
                     f"+ {made['alpha']:g} x its fine-tune `{made['fine_tuned']['model']}` "
                     f"(sha256 `{made['fine_tuned']['weights_sha256']}`); no training of its own.")
    if release:
        lines.append(f"- Derived from: {release.get('release')}")
        lines.append(f"- License: {release.get('license', 'that of the release')}")
        lines.extend(f"  - `{file}`: sha256 `{sha}`" for file, sha in release.get("files_sha256", {}).items())
    return "\n## How these weights were made\n\n" + "\n".join(lines) + "\n"


def channels_and_streaming(config: dict) -> str:
    """The card's line on the channels the model takes and its streaming mode
    (``DenoiserModule.streaming_summary``), from its architecture built as configured (no weights)."""
    from .hub import buildable_architectures

    model = buildable_architectures()[config["architecture"]](**config.get("init_args", {}))
    return model.streaming_summary()


def render_card(entry: ModelEntry, folder, results: list[dict], extra: str = "") -> str:
    folder = Path(folder)
    config = read_config(folder)
    if config.get("converted_from"):  # someone else's release: its license and provenance stay on the card
        from .convert.cards import source_sections

        extra = source_sections(entry.name, config) + extra
    extra = derivation_section(config) + extra
    data = ModelCardData(
        library_name="zoo",
        license=card_license(config),
        tags=["audio", "speech-enhancement", "denoising", "audio-to-audio", "zoo", entry.name,
              *(["converted"] if config.get("converted_from") else [])],
        pipeline_tag="audio-to-audio",
        datasets=sorted({b["dataset_type"] for b in results}) or None,
        model_name=entry.name,
        # model-index carries the model's own scores; the unprocessed input is context for the table
        eval_results=eval_results([b for b in results if b["system"] == entry.name]) or None,
    )
    rows = "\n".join(
        f"| {b['dataset']} | {_bold(b['system'], b['system'] == entry.name)} | "
        + " | ".join(_bold(f"{b['scores'][k]:.3f}", b["system"] == entry.name) for k in METRICS) + " |"
        for b in results)
    header = " | ".join(title for _, title in METRICS.values())
    body = f"""
# {entry.name}

{entry.summary}.

- Paper: {entry.paper}
- Trained on: {entry.trained_on}
- Architecture: `{config['architecture']}` at {config['sample_rate']} Hz, init arguments
  `{json.dumps(config.get('init_args', {}), sort_keys=True)}`
- Input: {channels_and_streaming(config)}
- Weights: `model.safetensors`, sha256 `{config.get('weights_sha256', '?')}`

## Use

```python
import zoo
model = zoo.load("{entry.name}")                  # or zoo.load("{entry.hub_repo}")
enhanced = model.enhance(noisy, sample_rate=48000)  # any rate, [T] or [channels, T]
model.enhance_file("noisy.wav", "enhanced.wav")
```

```bash
zoo denoise noisy/ -o enhanced/ --model {entry.name}
```

## Scores

Measured by `benchmarks/quality.py` through `zoo eval` (PESQ wide band with `pesq`, STOI with
`pystoi`, SI-SDR, SNR, and the composite measures of Hu & Loizou 2008). Every system of that
one run on the same files, this model in bold; `model-index` holds only this model's scores.

| data | system | {header} |
|---|---|{"---|" * len(METRICS)}
{rows}
{training_section(folder)}{extra}"""
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body).content


def write_card(entry: ModelEntry, folder, results: list[dict], extra: str = "") -> Path:
    from .hub import write_text

    path = Path(folder) / CARD_NAME
    write_text(path, render_card(entry, folder, results, extra))
    return path
