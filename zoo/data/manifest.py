"""Mixtures of the real audio in ../shared/data, chosen through its ``MANIFEST.json``.

The manifest lists every file with its ``group`` (the folder: ``speech/ljspeech``,
``noise/noisex`` ...), ``path`` (relative to the manifest), ``seconds``, ``speaker`` (speech) or
``label`` (noise), ``source`` and ``license``. A recipe names groups and, optionally, speakers,
labels or path patterns; :class:`ManifestDataModule` turns them into the same train and
validation pools as :class:`zoo.data.Mixtures` and mixes them with its code.

Held out, whatever the recipe says:

- validation speech and noise (``val_speech`` / ``val_noise``, default ``zoo.data.splits``) and
  the test split's (``TEST_SPEECH`` / ``TEST_NOISE``) never enter the training pools, so naming
  the whole ``noise/noisex`` group trains on its training noises only;
- the ``voicebank-demand-subset`` group is evaluation data: naming it for mixing is refused.
"""
from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from .files import DATA_ROOT, resolve_data_path
from .mixtures import GENERATED_PREFIX, MixingDataModule, check_mixing_args, split_generated
from .noises import BABBLE_SPEECH, BABBLE_TALKERS
from .splits import TEST_NOISE, TEST_SPEECH, VAL_NOISE, VAL_SPEECH

DEFAULT_SPEECH_GROUPS = ["speech/librispeech-train-clean-100", "speech/ljspeech"]
DEFAULT_NOISE_GROUPS = ["noise/speech-commands", "noise/noisex"]
EVALUATION_ONLY_GROUPS = {"voicebank-demand-subset"}


class ManifestError(ValueError):
    """A manifest, group or filter that selects nothing usable; the message says which and why."""


def load_manifest(path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist; set ZOO_DATA or data_root to the folder that "
                                "holds MANIFEST.json (../shared/data by default), or pass manifest: PATH")
    try:
        rows = json.loads(path.read_text())
    except ValueError as error:
        raise ManifestError(f"manifest {path} is not valid JSON ({error})") from error
    if not isinstance(rows, list) or any(not isinstance(r, dict) or "path" not in r or "group" not in r for r in rows):
        raise ManifestError(f"manifest {path} must be a JSON list of objects with 'group' and 'path' fields")
    return rows


def _under(path: str, prefixes) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


class ManifestDataModule(MixingDataModule):
    """Speech groups x noise groups of ``MANIFEST.json``, mixed on the fly like
    :class:`zoo.data.Mixtures`. Batches ``{"noisy", "clean", "noise": [B, T], "snr_db": [B]}``.

    Args:
        speech_groups: manifest groups of training speech (default
            ``speech/librispeech-train-clean-100`` and ``speech/ljspeech``).
        noise_groups: manifest groups of training noise (default ``noise/speech-commands`` and
            ``noise/noisex``), and/or ``"generated:NAME"`` noises.
        val_speech, val_noise: manifest paths (files or folders) held out for validation
            (defaults ``zoo.data.splits.VAL_SPEECH`` / ``VAL_NOISE``); ``val_noise`` may name
            generated noises.
        speakers: keep only these speakers' training speech; exclude_speakers: drop these.
        labels: keep only noise files with these labels (e.g. ``[babble, factory1]``).
        exclude: glob patterns of manifest paths to leave out (e.g. ``["*/ljspeech/LJ001-*"]``).
        manifest: the manifest file, relative to ``data_root`` (``$ZOO_DATA``, else ../shared/data).
        The other arguments are :class:`zoo.data.Mixtures`'s.
    """

    def __init__(self, speech_groups: list[str] | None = None, noise_groups: list[str] | None = None,
                 val_speech: list[str] | None = None, val_noise: list[str] | None = None,
                 speakers: list[str] | None = None, exclude_speakers: list[str] | None = None,
                 labels: list[str] | None = None, exclude: list[str] | None = None,
                 manifest: str = "MANIFEST.json", data_root: str | None = None, sample_rate: int = 16000,
                 crop_seconds: float = 2.0, snr_db: tuple[float, float] = (-5.0, 20.0),
                 snr_db_choices: list[float] | None = None, gain_db: tuple[float, float] | None = None,
                 batch_size: int = 4, train_size: int = 1000, val_size: int = 64, num_workers: int = 0,
                 seed: int = 0, babble_speech: list[str] | None = None, babble_talkers: int = BABBLE_TALKERS,
                 noise_tilt_db: tuple[float, float] | None = None):
        super().__init__()
        check_mixing_args(snr_db, snr_db_choices, gain_db, crop_seconds, batch_size, train_size, val_size,
                          babble_talkers, noise_tilt_db)
        for groups in (speech_groups or [], noise_groups or []):
            refused = EVALUATION_ONLY_GROUPS & set(groups)
            if refused:
                raise ManifestError(f"{sorted(refused)[0]} is evaluation data (see ../shared/data/README.md): never "
                                    "train or validate on it; score it with `zoo eval --data voicebank-demand:PATH`")
        split_generated(noise_groups or [])
        split_generated(val_noise or [])
        self.save_hyperparameters()

    def _manifest_path(self) -> Path:
        return resolve_data_path(self.hparams.manifest, self.hparams.data_root or DATA_ROOT)

    def file_lists(self) -> dict[str, list]:
        hp = self.hparams
        path = self._manifest_path()
        rows = load_manifest(path)
        base = path.parent
        known = sorted({r["group"] for r in rows})
        speech_groups = list(hp.speech_groups or DEFAULT_SPEECH_GROUPS)
        noise_groups, generated = split_generated(hp.noise_groups or DEFAULT_NOISE_GROUPS)
        for group in speech_groups + noise_groups:
            if group not in known:
                raise ManifestError(f"group '{group}' is not in {path}; its groups are: {', '.join(known)}")
        val_speech = list(hp.val_speech or VAL_SPEECH)
        val_noise, val_generated = split_generated(hp.val_noise or VAL_NOISE)
        held_out = val_speech + val_noise + TEST_SPEECH + TEST_NOISE
        excluded = hp.exclude or []

        def keep(row) -> bool:
            return not _under(row["path"], held_out) and not any(fnmatch.fnmatch(row["path"], p) for p in excluded)

        speech = [r for r in rows if r["group"] in speech_groups and keep(r)]
        if hp.speakers:
            speech = [r for r in speech if str(r.get("speaker")) in set(map(str, hp.speakers))]
        if hp.exclude_speakers:
            speech = [r for r in speech if str(r.get("speaker")) not in set(map(str, hp.exclude_speakers))]
        noise = [r for r in rows if r["group"] in noise_groups and keep(r)]
        if hp.labels:
            noise = [r for r in noise if str(r.get("label")) in set(map(str, hp.labels))]
        lists = {"speech": speech, "noise": noise,
                 "val_speech": [r for r in rows if _under(r["path"], val_speech)],
                 "val_noise": [r for r in rows if _under(r["path"], val_noise)]}
        for key, selected in lists.items():
            wanted = {"speech": speech_groups, "noise": noise_groups, "val_speech": val_speech,
                      "val_noise": val_noise}[key]
            if wanted and not selected:
                raise ManifestError(f"ManifestDataModule {key}: {wanted} with the filters given selects no file of "
                                    f"{path}")
        out = {key: [base / r["path"] for r in selected] for key, selected in lists.items()}
        out["noise"] += [GENERATED_PREFIX + g for g in generated]
        out["val_noise"] += [GENERATED_PREFIX + g for g in val_generated]
        for key in ("noise", "val_noise"):
            if not out[key]:
                raise ManifestError(f"ManifestDataModule {key}: nothing to draw from")
        babble = hp.babble_speech or BABBLE_SPEECH
        out["babble"] = [base / r["path"] for r in rows if _under(r["path"], babble)]
        if GENERATED_PREFIX + "babble" in out["noise"] + out["val_noise"] and not out["babble"]:
            raise ManifestError(f"babble_speech {babble} selects no file of {path}")
        missing = [f for files in out.values() for f in files if not isinstance(f, str) and not f.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} of the files listed in {path} are missing, e.g. {missing[0]}; "
                                    "set ZOO_DATA or data_root to the folder that holds the manifest and its audio")
        for key, files in out.items():
            out[key] = [f if isinstance(f, str) else f.resolve() for f in files]
        return out


__all__ = ["DEFAULT_NOISE_GROUPS", "DEFAULT_SPEECH_GROUPS", "ManifestDataModule", "ManifestError", "load_manifest"]
