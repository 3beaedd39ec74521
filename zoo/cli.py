"""The ``zoo`` command: list, info, denoise, fit, publish, demo, eval, card, convert."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from .paths import shown as _shown

FLAGSHIP_MODEL = "feature-loss-can"
FALLBACK_MODEL = "wiener"
MODEL_HELP = (f"registered name, card folder or ORG/NAME (default: {FLAGSHIP_MODEL}; {FALLBACK_MODEL} while "
              f"{FLAGSHIP_MODEL}'s weights are missing or its card publishes no score on VoiceBank-DEMAND, "
              "or one below it)")
#: the demo's example, a pair of the VoiceBank-DEMAND subset in $ZOO_DATA (default ../shared/data)
EXAMPLE_NOISY = "voicebank-demand-subset/noisy_testset_wav/p232_013.wav"
EXAMPLE_CLEAN = "voicebank-demand-subset/clean_testset_wav/p232_013.wav"


def card_score(name: str, dataset_type: str = "voicebank-demand", metric: str = "pesq") -> float | None:
    """A registered model's published score (its bundled card's ``model-index``), or None."""
    from huggingface_hub import ModelCard

    from .hub import CARD_NAME
    from .registry import get_entry

    path = get_entry(name).card_path / CARD_NAME
    if not path.is_file():
        return None
    for result in ModelCard.load(path).data.eval_results or []:
        if result.dataset_type == dataset_type and result.metric_type == metric:
            return float(result.metric_value)
    return None


def default_model() -> tuple[str, str]:
    """(name, why): the flagship once it is registered with weights and its card publishes a PESQ-wb
    on the VoiceBank-DEMAND subset not below the Wiener filter's; the Wiener filter otherwise, so
    that a command without ``--model`` never makes audio worse than the classical baseline
    (early CPU-trained weights can)."""
    import zoo
    from .hub import WEIGHTS_NAME
    from .registry import get_entry

    if FLAGSHIP_MODEL not in zoo.list_models() or not (get_entry(FLAGSHIP_MODEL).card_path / WEIGHTS_NAME).is_file():
        return FALLBACK_MODEL, f"{FLAGSHIP_MODEL} has no weights here"
    flagship, fallback = card_score(FLAGSHIP_MODEL), card_score(FALLBACK_MODEL)
    if flagship is None:
        return FALLBACK_MODEL, (f"{FLAGSHIP_MODEL}'s card publishes no PESQ-wb on VoiceBank-DEMAND yet; "
                                f"ask for it with --model {FLAGSHIP_MODEL}")
    if fallback is not None and flagship < fallback:
        return FALLBACK_MODEL, (f"{FLAGSHIP_MODEL}'s published PESQ-wb on VoiceBank-DEMAND ({flagship:.2f}) is below "
                                f"{FALLBACK_MODEL}'s ({fallback:.2f}); ask for it with --model {FLAGSHIP_MODEL}")
    return FLAGSHIP_MODEL, "the flagship"


def _model_or_default(args) -> str:
    if args.model is None:
        args.model, why = default_model()
        print(f"no --model given: using {args.model} ({why})", file=sys.stderr)
    return args.model


def main(argv: list[str] | None = None) -> int:
    """Run a ``zoo`` command; every error ends in one ``zoo: error: ...`` line (``zoo --debug ...`` or
    ZOO_DEBUG=1 shows the traceback instead), Ctrl-C in exit status 130 and SIGTERM in 143."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("ZOO_DEBUG", "") not in ("", "0")
    while argv and argv[0] == "--debug":
        debug = True
        argv.pop(0)
    # `zoo fit` is Lightning's: its DDP processes can block in collective calls, where a Python
    # handler never runs, so there SIGTERM keeps its default action (the process ends)
    previous = _terminate_on_sigterm() if not (argv and argv[0] == "fit") else None
    try:
        return _run(argv)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        what = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
        print(f"zoo: interrupted ({what})", file=sys.stderr)
        return interrupt.exit_status if isinstance(interrupt, Terminated) else 130
    except Exception as error:  # noqa: BLE001 - the invariant: no traceback unless --debug
        if debug:
            raise
        error = _cause_for_user(error)
        print(f"zoo: error: {_user_message(error)}", file=sys.stderr)
        if not _is_user_error(error):
            print("zoo: this looks like a bug in zoo; rerun with `zoo --debug ...` for the traceback and report it",
                  file=sys.stderr)
            return 1
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "fit":  # everything after `fit` belongs to LightningCLI
        from .train import run_lightning_cli

        run_lightning_cli(["fit", *argv[1:]])
        return 0
    args = _parser().parse_args(argv)
    if not hasattr(args, "run"):
        _parser().print_help()
        return 2
    return args.run(args) or 0


class CliError(Exception):
    """An error the user can fix; printed without a traceback."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``), raised like Ctrl-C so that every ``finally`` and temporary-file
    clean-up runs; ``zoo`` exits with 128 + 15."""

    exit_status = 143


def _raise_terminated(signum, frame):
    # once: a second SIGTERM (or one arriving while the clean-up runs) ends the process outright
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise Terminated()


def _terminate_on_sigterm():
    """Turn SIGTERM into :class:`Terminated` (the default action kills Python without clean-up, leaving
    temporary files behind); returns the previous handler, None when it cannot be set (not the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:
        return None


def _is_user_error(error: BaseException) -> bool:
    """Errors that say what the user should fix (bad input, files, data configuration), as opposed to bugs.
    Only modules already imported are consulted: an error can only be of a class that exists, and
    importing zoo.audio (torch) to classify ``zoo info /no/such/folder``'s error would cost seconds."""
    kinds = [CliError, OSError]
    for module, name in (("zoo.audio", "AudioError"), ("zoo.data.files", "DataConfigError"),
                         ("zoo.hub", "ModelLoadError"), ("zoo.registry", "UnknownModelError"),
                         ("zoo.interpolate", "InterpolationError"), ("zoo.finetune", "FinetuneError"),
                         ("zoo.card_from_checkpoint", "CardFolderError"),
                         ("zoo.checkpoint_io", "CheckpointFormatError")):
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, name):
            kinds.append(getattr(loaded, name))
    return isinstance(error, tuple(kinds))


def _cause_for_user(error: BaseException) -> BaseException:
    """The user error behind ``error``: libraries wrap ours (jsonargparse turns a data module's
    DataConfigError into "Does not validate against any of the Union subtypes")."""
    seen, cause = set(), error
    while cause is not None and id(cause) not in seen:
        if _is_user_error(cause):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return error


def _user_message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror and not isinstance(error, CliError):
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}" + (f" ({error.filename2})" if error.filename2 else "")
    if _is_user_error(error):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description="Speech denoising model zoo")
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error (before the command: zoo --debug denoise ...)")
    sub = parser.add_subparsers(title="commands")

    p = sub.add_parser("list", help="registered models, one line each")
    p.set_defaults(run=cmd_list)

    p = sub.add_parser("info", help="show a model's card")
    p.add_argument("model")
    p.add_argument("--revision")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("denoise", help="enhance audio files or folders")
    p.add_argument("inputs", nargs="+", type=Path, help="audio files and/or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True,
                   help="output folder (input folders become subfolders named after them); with a single input "
                        "file, a name with an audio extension (.wav, .flac, .ogg, .aiff) is the output file")
    p.add_argument("-m", "--model", default=None, help=MODEL_HELP)
    p.add_argument("--revision", help="Hub revision (branch, tag or commit) of the model")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cpu)")
    p.add_argument("--chunk-seconds", type=float, default=30.0,
                   help="block length for long files, at least 0.01 (default 30)")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument("--allow-output-inside-input", action="store_true",
                   help="allow the output folder to lie inside an input folder")
    p.set_defaults(run=cmd_denoise)

    p = sub.add_parser("publish", help="upload a model card folder to the Hugging Face Hub")
    p.add_argument("model", help="registered name or card folder")
    p.add_argument("--repo-id", required=True, help="ORG/NAME on the Hub")
    p.add_argument("--private", action="store_true")
    p.add_argument("--revision", help="branch to commit to")
    p.add_argument("--message", help="commit message")
    p.set_defaults(run=cmd_publish)

    p = sub.add_parser("demo", help="denoise a VoiceBank-DEMAND example (or your file); write WAV, PNG, scores")
    p.add_argument("--out", type=Path, default=Path("demo_output"))
    p.add_argument("-m", "--model", default=None, help=MODEL_HELP)
    p.add_argument("--input", "--noisy", dest="noisy", type=Path, default=None,
                   help=f"noisy input (default: $ZOO_DATA/{EXAMPLE_NOISY}, ZOO_DATA defaulting to ../shared/data)")
    p.add_argument("--clean", type=Path, default=None,
                   help="clean reference for the scores (default: the example's, when --input is not given)")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("eval", help="score models on noisy/clean pairs: per-file CSV, summary, tranches")
    p.add_argument("-m", "--model", action="append", required=True, dest="models",
                   help="a zoo model, a peer (deepfilternet3) or 'noisy' (the unprocessed input); repeatable")
    p.add_argument("--data", required=True,
                   help="voicebank-demand:PATH | folders:NOISY_DIR:CLEAN_DIR | manifest:FILE(.csv|.json)")
    p.add_argument("--out", type=Path, default=Path("eval_output"))
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    p.add_argument("--reference-channel", type=int, default=1,
                   help="multichannel noisy files: the channel (1 = first) the unprocessed input and single-channel "
                        "models are scored on; models that take all the channels get all of them (default 1)")
    p.set_defaults(run=cmd_eval)

    p = sub.add_parser("card", help="re-render a model card's README.md and model-index from results")
    p.add_argument("model")
    p.add_argument("--from", dest="results", type=Path, required=True, help="a results JSON (benchmarks/results)")
    p.set_defaults(run=cmd_card)

    p = sub.add_parser("convert", help="convert the authors' released weights into their model card folder",
                       description="Convert a released TensorFlow checkpoint (Germain, Chen & Koltun 2019) into "
                                   "zoo weights. Without --out, the weights go into the registered card folder "
                                   "(hub_cards/NAME) once their sha256 matches the committed config.json.")
    p.add_argument("sources", nargs="+", type=Path, metavar="SRC",
                   help="a bundle prefix (DIR/se_model.ckpt), its .index file, or a folder holding one bundle")
    p.add_argument("--out", type=Path, default=None,
                   help="write the complete card folder (config.json, model.safetensors, README.md) here instead")
    p.add_argument("--overwrite", action="store_true", help="with --out: replace the files of an existing card")
    p.set_defaults(run=cmd_convert)

    p = sub.add_parser("interpolate", help="mix a model with its fine-tune in weight space (WiSE-FT) into a new card folder",
                       description="Write (1 - alpha) x START + alpha x FINE_TUNED into a new card folder (WiSE-FT, "
                                   "Wortsman et al. 2022): keeps most of a fine-tune's gain on its new data and "
                                   "most of what it forgot of the old. Score it with zoo eval.")
    p.add_argument("start", help="the model the fine-tune started from (name, folder or ORG/NAME)")
    p.add_argument("fine_tuned", help="the fine-tuned model (name, folder or ORG/NAME)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the fine-tuned model, 0..1 (default 0.5)")
    p.add_argument("--out", type=Path, required=True, help="the new card folder (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(run=cmd_interpolate)

    sub.add_parser("fit", help="train from a recipe: zoo fit --config recipes/data/DATA.yaml --config recipes/MODEL/RECIPE.yaml [overrides]")

    p = sub.add_parser("finetune", help="fine-tune a model on your noise: one command to a new card folder",
                       description="Run recipes/MODEL/finetune-noise.yaml (with recipes/data/finetune-noise.yaml) on your noise (zoo fit), export the last "
                                   "checkpoint into a new card folder (never hub_cards/), and print it with the "
                                   "commands to use and publish it. LightningCLI overrides go after --.")
    p.add_argument("--noise", nargs="+", required=True, type=Path, metavar="DIR", help="your noise folders or files")
    p.add_argument("-m", "--model", default=FLAGSHIP_MODEL, help=f"registered model to start from (default {FLAGSHIP_MODEL})")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's epochs)")
    p.add_argument("--out", type=Path, default=None, help="the new card folder (default: a new runs/cards/MODEL-NOISE)")
    p.add_argument("--recipe", type=Path, default=None, help="default: recipes/MODEL/finetune-noise.yaml")
    p.add_argument("overrides", nargs="*", metavar="-- --KEY VALUE", help="LightningCLI overrides, after --")
    p.set_defaults(run=cmd_finetune)
    return parser


def cmd_finetune(args) -> int:
    from .finetune import FinetuneError, finetune

    try:
        finetune(args.noise, args.model, args.steps, args.out, args.recipe, args.overrides)
    except FinetuneError as error:
        raise CliError(str(error)) from error
    return 0


def _load(name: str, revision: str | None = None, device: str | None = None):
    import zoo
    from .hub import ModelLoadError

    try:
        model = zoo.load(name, revision=revision, device=device)
    except (zoo.UnknownModelError, ModelLoadError) as error:
        raise CliError(str(error)) from error
    print(f"model {name}: {model.zoo_source}", file=sys.stderr)
    return model


def cmd_list(args) -> int:
    from .registry import entries

    rows = [(e.name, e.summary, e.trained_on) for e in entries()]
    width = max(len(r[0]) for r in rows)
    for name, summary, trained in rows:
        print(f"{name:<{width}}  {summary}  [trained on: {trained}]")
    return 0


def cmd_info(args) -> int:
    from .hub import CARD_NAME, ModelLoadError, read_config, resolve
    from .registry import UnknownModelError

    try:
        folder, source = resolve(args.model, args.revision)
        config = read_config(folder)
    except (UnknownModelError, ModelLoadError) as error:
        raise CliError(str(error)) from error
    print(f"model {args.model}: {source}", file=sys.stderr)  # says so when the Hub was not used, and why
    card = folder / CARD_NAME
    print(card.read_text() if card.is_file() else f"(no model card in {folder})")
    print(f"\nsource: {source}\narchitecture: {config['architecture']}  sample rate: {config.get('sample_rate')} Hz")
    return 0


def cmd_denoise(args) -> int:
    from .audio import AudioError, made_by, remove_stale_temporaries
    from .data.files import AUDIO_SUFFIXES
    from .module import block_frames

    try:
        block_frames(args.chunk_seconds, 16000)
    except AudioError as error:
        raise CliError(f"--chunk-seconds {args.chunk_seconds}: {error}".replace("chunk_seconds must", "must")) from None
    _check_device(args.device)
    jobs, problems = _plan_denoise(args.inputs, args.output, AUDIO_SUFFIXES, args.allow_output_inside_input)
    output = Path(args.output)
    _model_or_default(args)
    model = _load(args.model, args.revision, args.device)
    model.zoo_model_name = args.model  # recorded in every output: a rerun with another model can tell
    leftovers = [path for folder in sorted({dst.parent for _, dst in jobs}) for path in remove_stale_temporaries(folder)]
    if leftovers:
        print(f"removed {len(leftovers)} temporary files left by an interrupted earlier run, e.g. {leftovers[0]}",
              file=sys.stderr)
    written, skipped, failed = [], 0, 0
    current = None
    try:
        for src, dst in tqdm(jobs, unit="file", desc="denoise", disable=len(jobs) < 2):
            current = src
            if (dst.exists() or dst.is_symlink()) and not args.overwrite:
                tqdm.write(f"skipped {src}: {_existing_output_note(dst, made_by(dst) if dst.is_file() else None, args.model)}",
                           file=sys.stderr)
                skipped += 1
                continue
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    model.enhance_file(src, dst, chunk_seconds=args.chunk_seconds, progress=True, overwrite=True)
                for warning in caught:
                    tqdm.write(f"warning {src}: {warning.message}", file=sys.stderr)
                written.append(dst)
            except AudioError as error:
                tqdm.write(f"failed {src}: {error}", file=sys.stderr)
                failed += 1
            except OSError as error:  # unwritable folder, a file where a folder should be, full disk ...
                blocking = next((p for p in dst.parents if p.exists() and not p.is_dir()), None)
                reason = f"{blocking} is a file, not a folder" if blocking else _user_message(error)
                tqdm.write(f"failed {src}: cannot write {dst}: {reason}", file=sys.stderr)
                failed += 1
            current = None
    except KeyboardInterrupt as interrupt:
        what = "SIGTERM" if isinstance(interrupt, Terminated) else "Ctrl-C"
        not_done = len(jobs) - len(written) - skipped - failed
        if current is not None:
            print(f"\ninterrupted ({what}) while enhancing {current}: nothing written for it (no partial file left)",
                  file=sys.stderr)
        for dst in written:
            print(f"finished {dst}", file=sys.stderr)
        print(f"interrupted: {len(written)} enhanced, {skipped} skipped, {failed} failed, {len(problems)} ignored, "
              f"{not_done} not done -> {output}", file=sys.stderr)
        return interrupt.exit_status if isinstance(interrupt, Terminated) else 130
    for problem in problems:
        print(f"ignored {problem}", file=sys.stderr)
    print(f"{len(written)} enhanced, {skipped} skipped, {failed} failed, {len(problems)} ignored -> {output}",
          file=sys.stderr)
    return 1 if failed else 0


def _existing_output_note(dst: Path, made: str | None, model: str) -> str:
    if made == model:
        return f"{dst} exists, made by {model} (use --overwrite to redo it)"
    if made:
        return (f"{dst} exists, made by {made}, not by {model}: it was NOT enhanced with {model}; "
                "use --overwrite to re-enhance it, or another output folder")
    return f"{dst} exists and does not say which model made it (use --overwrite to replace it)"


def _check_device(device: str | None) -> None:
    """Refuse a device name torch does not know, or a device this machine lacks, in one line."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise CliError(f"--device {device}: not a device name; use cpu, cuda, cuda:N (the Nth GPU) or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise CliError(f"--device {device}: no CUDA GPU is usable here (no GPU, no driver, or a CPU-only "
                           "PyTorch build); use --device cpu")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise CliError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                           f"numbered 0 to {torch.cuda.device_count() - 1}")
    elif parsed.type == "mps":
        if not torch.backends.mps.is_available():
            raise CliError(f"--device {device}: Apple MPS is not available here; use --device cpu")
    elif parsed.type != "cpu":
        raise CliError(f"--device {device}: zoo runs on cpu, cuda, cuda:N or mps")


def _plan_denoise(inputs: list[Path], output, suffixes, allow_inside: bool):
    """Pair every input file with its output path; say what is ignored and why.

    Layout: with one input file, ``-o`` with an audio extension names the output file; another
    extension (.mp3, .txt) is refused; a name without extension, an existing folder or a name ending
    in ``/`` is a folder that receives the input's name (and the run says so). Otherwise ``-o``
    is a folder: input files go directly into it, and each input folder becomes a subfolder named
    after it (``recs/`` -> ``OUT/recs/...``; ``.`` -> ``OUT/<name of the current folder>/...``), so
    that several inputs never collide. Hidden files and zoo's temporary outputs are never inputs.
    """
    from .audio import is_temporary_output

    raw = str(output)
    output = Path(output)
    wanted = ", ".join(sorted(suffixes))
    for parent in [output, *output.parents]:
        if parent.exists() and not parent.is_dir() and parent != output:
            raise CliError(f"cannot write under {output}: {parent} is a file, not a folder")
    for item in inputs:
        if not item.exists():
            raise CliError(f"{item}: no such file or folder")
    single_file = len(inputs) == 1 and inputs[0].is_file()
    as_folder = raw.endswith(("/", os.sep)) or output.is_dir()
    if output.exists() and not output.is_dir() and not output.is_file():
        raise CliError(f"-o {raw}: not a regular file or folder; name an audio file (e.g. enhanced.wav) or a folder")
    if single_file and not as_folder:
        suffix = output.suffix.lower()
        if not suffix:  # a name without extension is a folder, as for several inputs; say so
            as_folder = True
            print(f"-o {raw} has no audio extension: writing into the folder {output / inputs[0].name} "
                  f"(name a file, e.g. -o {output.name}.wav, to write exactly that file)", file=sys.stderr)
        elif suffix not in suffixes:
            raise CliError(f"-o {raw}: zoo cannot write '{suffix}' files; use one of {wanted} "
                           f"(or end the name with / for a folder)")
    elif not single_file and not as_folder:
        if output.is_file():
            raise CliError(f"-o {raw} is a file, but {len(inputs)} inputs need an output folder")
        if output.suffix.lower() in suffixes:
            raise CliError(f"-o {raw} names an audio file, but the inputs ({', '.join(map(str, inputs))}) give "
                           "several files: name an output folder")
    jobs, problems = [], []
    for item in inputs:
        if item.is_file():
            dst = output / item.name if not single_file or as_folder else output
            jobs.append((item, dst))
            continue
        root = item.resolve()
        if _is_inside(output.resolve(), root) and not allow_inside:
            raise CliError(f"output folder {output} lies inside input folder {item}: its outputs would be "
                           "read as inputs next time; choose another folder or pass --allow-output-inside-input")
        into = output / (item.name if item.name not in ("", ".", "..") else (root.name or "root"))
        for path in sorted(p for p in item.rglob("*") if p.is_file()):
            relative = path.relative_to(item)
            if _is_inside(path.resolve(), output.resolve()):
                continue  # our own earlier outputs
            if is_temporary_output(path) or any(part.startswith(".") for part in relative.parts):
                continue  # hidden files and zoo's temporary outputs (of a run in progress or interrupted)
            if path.suffix.lower() not in suffixes:
                problems.append(f"{path}: not an audio file extension ({wanted})")
                continue
            jobs.append((path, into / relative))
    sources_by_output: dict[Path, list[Path]] = {}
    for src, dst in jobs:
        if src.resolve() == dst.resolve():
            raise CliError(f"output {dst} would overwrite its input; choose another output")
        sources_by_output.setdefault(dst.resolve(), []).append(src)
    clashes = {dst: srcs for dst, srcs in sources_by_output.items() if len(srcs) > 1}
    if clashes:
        dst, srcs = next(iter(clashes.items()))
        raise CliError(f"{len(clashes)} outputs would be written twice, e.g. {dst} from "
                       f"{' and '.join(map(str, srcs))}; denoise them into separate output folders")
    if not jobs:
        raise CliError(f"no audio files found in {', '.join(map(str, inputs))}")
    return jobs, problems


def _is_inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def cmd_eval(args) -> int:
    from .data.pairs import DataSpecError
    from .evaluate import EvaluationInputError, evaluate, markdown_summary, write_reports
    from .hub import ModelLoadError
    from .registry import UnknownModelError

    try:
        evaluation = evaluate(args.models, args.data, workers=args.workers, limit=args.limit,
                              reference_channel=args.reference_channel)
    except (DataSpecError, UnknownModelError, ModelLoadError, EvaluationInputError) as error:
        raise CliError(str(error)) from error
    paths = write_reports(evaluation, args.out)
    print(markdown_summary(evaluation.summary()))
    for kind, path in paths.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def cmd_card(args) -> int:
    from .cards import card_results, write_card
    from .registry import UnknownModelError, get_entry

    try:
        entry = get_entry(args.model)
    except UnknownModelError as error:
        raise CliError(str(error)) from error
    if not args.results.is_file():
        raise CliError(f"{args.results}: no such results file (write one with benchmarks/quality.py)")
    results = card_results(json.loads(args.results.read_text()), args.model)
    if not results:
        raise CliError(f"{args.results} holds no scores for {args.model}")
    print(f"wrote {write_card(entry, entry.card_path, results)}")
    return 0


def cmd_publish(args) -> int:
    from .hub import ModelLoadError, PublishError, publish
    from .registry import UnknownModelError

    try:
        info = publish(args.model, args.repo_id, private=args.private, revision=args.revision,
                       commit_message=args.message)
    except (UnknownModelError, ModelLoadError, PublishError) as error:
        raise CliError(str(error)) from error
    print(f"published {args.model} to {args.repo_id}: {getattr(info, 'commit_url', info)}")
    return 0


def cmd_interpolate(args) -> int:
    from .hub import ModelLoadError
    from .interpolate import InterpolationError, interpolate_models
    from .registry import UnknownModelError

    try:
        folder = interpolate_models(args.start, args.fine_tuned, args.alpha, args.out, overwrite=args.overwrite)
    except (InterpolationError, UnknownModelError, ModelLoadError) as error:
        raise CliError(str(error)) from error
    print(f"wrote {folder}/ ({1 - args.alpha:g} x {args.start} + {args.alpha:g} x {args.fine_tuned})\n"
          f"next: zoo eval --model {folder}/ --model {args.start} --data voicebank-demand:PATH")
    return 0


def cmd_convert(args) -> int:
    from .convert import BundleError, ConvertError, convert_into, install_converted

    if args.out is not None and len(args.sources) > 1:
        raise CliError(f"--out names one card folder, but {len(args.sources)} sources were given: "
                       "convert them one at a time, or leave out --out to fill their hub_cards/ folders")
    if args.overwrite and args.out is None:
        raise CliError("--overwrite only applies with --out: the hub_cards/ folders are checked against "
                       "their committed config.json, never overwritten")
    for src in args.sources:
        try:
            done = (install_converted(src) if args.out is None else
                    convert_into(src, args.out, overwrite=args.overwrite))
        except (BundleError, ConvertError) as error:
            raise CliError(str(error)) from error
        except OSError as error:  # unreadable file, full disk ...
            raise CliError(f"{src}: {error.strerror or error} ({error.filename or src})") from error
        if done.status == "verified":
            print(f"{done.name}: already converted, sha256 verified ({done.sha256}) in {_shown(done.folder)}")
            continue
        for path in done.files:
            print(f"wrote {_shown(path)}")
        check = "matches the card's config.json" if done.status == "installed" else done.note
        print(f"{done.name}: model.safetensors sha256 {done.sha256}" + (f" ({check})" if check else ""))
    return 0


def _data_root() -> Path:
    from .registry import PROJECT_ROOT

    return Path(os.environ.get("ZOO_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def _demo_input(args) -> tuple[Path, Path | None, str]:
    """(noisy, clean or None, where they come from): the user's files, else the example in $ZOO_DATA."""
    if args.noisy is not None:
        for path in (args.noisy, args.clean):
            if path is not None and not path.is_file():
                raise CliError(f"{path}: no such file")
        origin = "your file" + (" and reference" if args.clean else "; no clean reference, no scores")
        return args.noisy, args.clean, origin
    root = _data_root()
    noisy, clean = root / EXAMPLE_NOISY, root / EXAMPLE_CLEAN
    where = "ZOO_DATA" if "ZOO_DATA" in os.environ else "the shared data beside the checkout (ZOO_DATA unset)"
    if not noisy.is_file():
        raise CliError(f"no example to denoise: {noisy} does not exist; set ZOO_DATA to the folder that holds "
                       "voicebank-demand-subset/ (the shared data), or pass your own file: "
                       "zoo demo --input NOISY.wav [--clean CLEAN.wav]")
    if args.clean is not None:
        if not args.clean.is_file():
            raise CliError(f"{args.clean}: no such file")
        clean = args.clean
    elif not clean.is_file():
        clean = None
    return noisy, clean, f"VoiceBank-DEMAND example p232_013 from {where}"


def cmd_demo(args) -> int:
    from .audio import AudioError, read_audio, write_audio
    from .metrics import quality_scores
    from .plots import spectrogram_figure

    noisy_path, clean_path, origin = _demo_input(args)
    print(f"input: {noisy_path} ({origin})" + (f"\nclean reference: {clean_path}" if clean_path else ""))
    _model_or_default(args)
    model = _load(args.model)
    try:
        noisy, rate = read_audio(noisy_path)
        clean, clean_rate = read_audio(clean_path) if clean_path else (None, None)
    except AudioError as error:
        raise CliError(str(error)) from error
    enhanced = model.enhance(noisy, rate)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(noisy_path).stem
    wav = out / f"{stem}_{args.model}.wav"
    write_audio(wav, enhanced, rate)
    panels = {"noisy input": noisy[0], f"enhanced ({args.model})": enhanced[0]}
    report = {"model": args.model, "source": model.zoo_source, "input": str(noisy_path),
              "input_from": origin, "clean": str(clean_path) if clean_path else None, "enhanced": str(wav)}
    if clean_path:
        if clean_rate != rate:
            raise CliError(f"clean reference is at {clean_rate} Hz but the noisy input at {rate} Hz")
        panels["clean reference"] = clean[0]
        report["scores"] = {"noisy": quality_scores(noisy[0], clean[0], rate),
                            args.model: quality_scores(enhanced[0], clean[0], rate)}
    png = spectrogram_figure(panels, rate, out / f"{stem}_{args.model}.png", title=f"{stem}: {args.model}")
    report["spectrogram"] = str(png)
    (out / "scores.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"enhanced audio: {wav}\nspectrograms:   {png}")
    if "scores" in report:
        print(f"\n| system | PESQ-wb | STOI | SI-SDR (dB) |\n|---|---|---|---|")
        for system, s in report["scores"].items():
            print(f"| {system} | {s['pesq_wb']:.2f} | {s['stoi']:.3f} | {s['si_sdr']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
