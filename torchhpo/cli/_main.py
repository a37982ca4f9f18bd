"""The ``torchhpo`` command (also ``python -m torchhpo``): argument parsing only.

    torchhpo run CONFIG.yaml [KEY.PATH=VALUE ...] [--device D] [--out DIR]
                             [--force] [--top N]
                             [--no-progress] [--no-plots] [--quiet]
                             [--checkpoint JOURNAL [--resume]]
    torchhpo predict RUN_DIR DATA.csv [--out FILE] [--force] [--no-header]
    torchhpo export RUN_DIR --onnx FILE [--force] [--dtype float32|float64]
    torchhpo examples DIR [--force]
    torchhpo info

Errors a user can fix (config, data, existing output) print one line,
``torchhpo: error: ...``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from .. import configs as bundled_configs
from .._version import __version__
from ._export import ExportError, export_onnx
from ._info import info_lines
from ._model_io import ModelFormatError
from ._runner import CommandError, predict, run
from ._runs import RunFolderExists
from ._schema import ConfigError

#: Errors shown as one line with exit status 2.
USER_ERRORS = (
    ConfigError,
    RunFolderExists,
    ModelFormatError,
    CommandError,
    ExportError,
    FileExistsError,
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchhpo",
        description=(
            "Hyper-parameter searches for MLPs (scikit-learn's GridSearchCV / "
            "RandomizedSearchCV), trained as fused packs with PyTorch."
        ),
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser(
        "run",
        help="run the search a YAML config describes; write a run folder",
        description=(
            "Run the search a YAML config describes, print a leaderboard, and "
            "write a run folder (cv_results.csv, best_params.json, the best model, "
            "config.yaml, plots/)."
        ),
    )
    run_parser.add_argument(
        "config",
        help=(
            "a YAML config file, or the name of a bundled one: "
            f"{', '.join(bundled_configs.names())} ('torchhpo examples DIR' copies "
            "them out)"
        ),
    )
    run_parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY.PATH=VALUE",
        help=(
            "override a config key, the value in YAML: search.cv=3, "
            "estimator.params.max_iter=50, "
            "search.space.alpha='{loguniform: [1e-5, 1e-2]}'"
        ),
    )
    run_parser.add_argument(
        "--device",
        help="training device: auto, cpu, cuda, cuda:N (overrides the config)",
    )
    run_parser.add_argument(
        "--out", help="the run folder (default: runs/<config name>)"
    )
    run_parser.add_argument(
        "--force", action="store_true", help="overwrite an existing run folder"
    )
    run_parser.add_argument(
        "--top", type=_positive_int, default=5, help="candidates in the leaderboard (5)"
    )
    run_parser.add_argument(
        "--no-progress", action="store_true", help="hide the progress bar"
    )
    run_parser.add_argument(
        "--no-plots", action="store_true", help="do not write the PNG plots"
    )
    run_parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help=(
            "print only the run folder's path: no progress bar, warnings, "
            "leaderboard or summary (errors still print)"
        ),
    )
    run_parser.add_argument(
        "--checkpoint",
        metavar="JOURNAL",
        help=(
            "journal each finished (candidate, fold) model to this file, so a "
            "killed or interrupted run can be resumed (the file is kept)"
        ),
    )
    run_parser.add_argument(
        "--resume",
        action="store_true",
        help=(
            "continue the run whose --checkpoint journal exists: train only the "
            "models it lacks (same config and data, or it is refused)"
        ),
    )

    predict_parser = commands.add_parser(
        "predict",
        help="predict with a run folder's best model",
        description=(
            "Load a run folder's saved model (no pickle) and write its predictions "
            "for a CSV or Parquet file (the training columns by name, in any "
            "order; a missing or extra column is an error) or a .npy file."
        ),
    )
    predict_parser.add_argument("run_dir", help="a run folder")
    predict_parser.add_argument(
        "data", help="a .csv, .parquet or .npy file of the training columns"
    )
    predict_parser.add_argument(
        "--out", help="output CSV (default: <data>.predictions.csv next to the data)"
    )
    predict_parser.add_argument(
        "--force", action="store_true", help="overwrite the output file"
    )
    predict_parser.add_argument(
        "--no-header",
        action="store_true",
        help=(
            "the CSV has no header row: read every row as data, the columns in "
            "training order (without it, a first row that looks like data is "
            "refused)"
        ),
    )

    export_parser = commands.add_parser(
        "export",
        help="export a run folder's best model (ONNX)",
        description=(
            "Export a run folder's best model as an ONNX graph (input X, output "
            "probabilities or prediction). The run's standardization is folded into "
            "the first layer, so the graph takes the raw columns where the "
            "preprocessing allows it; the command says when it does not."
        ),
    )
    export_parser.add_argument("run_dir", help="a run folder")
    export_parser.add_argument(
        "--onnx", required=True, metavar="FILE", help="the ONNX file to write"
    )
    export_parser.add_argument(
        "--force", action="store_true", help="overwrite the ONNX file"
    )
    export_parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        help="the graph's input and weight dtype (default: the dtype the model "
        "trained in, float32 unless its dtype parameter said otherwise)",
    )
    examples_parser = commands.add_parser(
        "examples",
        help="copy the bundled example configs and data files into a folder",
        description=(
            "Copy the example configs shipped with torchhpo (the seed's searches, "
            "a tabular CSV) and their data files (data/, with new_digits.csv and "
            "new_birds.csv to predict) into DIR, to read and edit."
        ),
    )
    examples_parser.add_argument("dir", help="the folder to copy them into")
    examples_parser.add_argument(
        "--force", action="store_true", help="overwrite files that exist there"
    )
    commands.add_parser(
        "info",
        help="print versions, the device and which CPU kernels run (and why)",
        description=(
            "Print torchhpo's, torch's and scikit-learn's versions, the device "
            "device='auto' picks, and which fused CPU kernels train: prebuilt "
            "extension, runtime-compiled or ATen, with the reason."
        ),
    )
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """One line per warning, without its source line, clear of the progress bar."""
    tqdm.write(f"{category.__name__}: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``torchhpo`` command line; return the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name (default ``sys.argv[1:]``).
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "run":
        # Overrides may follow options too (``run C.yaml --out R search.cv=3``).
        late = [a for a in extra if "=" in a and not a.startswith("-")]
        args.overrides = [*args.overrides, *late]
        extra = [a for a in extra if a not in late]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet = getattr(args, "quiet", False)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        if quiet:
            warnings.simplefilter("ignore")
            logging.disable(logging.INFO)  # Optuna's "new study created", ...
        try:
            if args.command == "run":
                result = run(
                    args.config,
                    out=args.out,
                    device=args.device,
                    force=args.force,
                    progress=not (args.no_progress or quiet),
                    plots=not args.no_plots,
                    top=args.top,
                    stdout=io.StringIO() if quiet else None,
                    checkpoint=args.checkpoint,
                    resume=args.resume,
                    overrides=args.overrides,
                )
                if quiet:
                    print(result.folder)
            elif args.command == "info":
                print("\n".join(info_lines()))
            elif args.command == "examples":
                written = bundled_configs.copy_to(args.dir, force=args.force)
                print(f"Copied {len(written)} files into {args.dir}:")
                for path in written:
                    print(f"  {path}")
                print(f"Run one with: torchhpo run {Path(args.dir) / 'seed_grid.yaml'}")
            elif args.command == "export":
                result = export_onnx(
                    args.run_dir, args.onnx, force=args.force, dtype=args.dtype
                )
                print(
                    f"ONNX model written to {result.path} (input X: "
                    f"{len(result.input_features)} columns; output {result.output}).\n"
                    f"Inputs: {result.note}"
                )
            else:
                path = predict(
                    args.run_dir,
                    args.data,
                    out=args.out,
                    force=args.force,
                    header=not args.no_header,
                )
                print(f"Predictions written to {path}")
        except USER_ERRORS as error:
            print(f"torchhpo: error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            hint = ""
            if getattr(args, "checkpoint", None):
                hint = (
                    f"; finished models are in {args.checkpoint}: rerun with "
                    f"--checkpoint {args.checkpoint} --resume to continue"
                )
            print(f"torchhpo: interrupted{hint}", file=sys.stderr)
            return 130
        finally:
            if quiet:
                logging.disable(logging.NOTSET)
    return 0
