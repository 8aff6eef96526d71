"""The ``cahp`` command line: fine-tune, evaluate, prune, run CAHP, export, baselines."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from cahp_core.choices import CLUSTERING_METHODS, DISTANCE_METHODS
from cahp_core.errors import CAHPError
from cahp_core.runs.config import PRESET_HELP, PRESETS

EPILOG = """examples (all offline with the bundled model and SST-5):
  cahp finetune --model minilm-l6 --task sst5 --max-train 512 --epochs 1 --out models/sst5
  cahp evaluate models/sst5 --task sst5 --max-eval 300 --mask "0:0,1,2;3:5" --json
  cahp prune models/sst5 --remove "0:0,1,2;3:5" --out models/sst5-pruned --onnx
  cahp run --model minilm-l6 --task sst5 --preset quick --out runs/demo
  cahp export runs/demo --degree 3 --out models/demo-d3 --onnx
  cahp export runs/demo --degree 4 --knee-curve performance --out models/demo-perf
  cahp export runs/demo --degree 6 --rule mmr --mmr-lambda 0.3 --out models/demo-mmr
  cahp recluster runs/old-run --seeds 5
  cahp diagnose runs/demo
  cahp baseline runs/demo --method gradient --heads 20 --out runs/demo/baselines/gradient-20
  cahp dashboard
"""


class ProgressPrinter:
    """A pipeline progress callback: one line per notable stage event on stderr, plus an
    optional JSON file (``--progress-json``) that the dashboard polls while the job works in
    another process.

    The file holds a :class:`~cahp_core.runs.progress.ProgressTracker` snapshot: a monotone
    overall fraction weighted by the stage costs measured in ``runs_root``'s finished runs
    (a default table before the first), elapsed time and ETA."""

    def __init__(
        self,
        progress_json: str | None = None,
        stages: tuple[str, ...] | None = None,
        runs_root: str | Path | None = None,
        preset: str | None = None,
    ):
        from cahp_core.runs.progress import ProgressTracker, measured_history, stage_weights
        from cahp_core.runs.stages import STAGE_NAMES

        stages = tuple(stages or STAGE_NAMES)
        history = measured_history(runs_root, preset) if runs_root else []
        self.tracker = ProgressTracker(stages, stage_weights(stages, history))
        self.history_runs = len(history)  # 0: the default stage-cost table
        self.path = Path(progress_json) if progress_json else None
        self._last: dict[str, str] = {}
        self._written = 0.0

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        import time

        last = self._last.get(stage)
        notable = fraction in (0.0, 1.0) or "reused" in message or last is None
        if notable and last != message:
            print(f"[{stage}] {message}", file=sys.stderr, flush=True)
        self._last[stage] = message
        snapshot = self.tracker.update(stage, fraction, message)
        now = time.monotonic()
        if fraction in (0.0, 1.0) or now - self._written > 0.5:
            self._write(snapshot)
            self._written = now

    def finish(self) -> None:
        """Record the job as complete (every stage at 100 %)."""
        self._write(self.tracker.finish())

    def _write(self, snapshot: dict) -> None:
        from cahp_core.atomic import write_json_atomic

        if self.path is not None:
            record = {**snapshot, "pid": os.getpid(), "history_runs": self.history_runs}
            write_json_atomic(self.path, record)


def _add_quantize_arg(p: argparse.ArgumentParser) -> None:
    from cahp_core.choices import QUANTIZE_CHOICES

    p.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        help="also write model.int8.onnx (ONNX Runtime dynamic quantization; implies --onnx) "
        "and print its accuracy change",
    )


def _print_int8(info: dict) -> None:
    """The accuracy change of the int8 graph against the pruned model it was made from."""
    if info.get("accuracy_int8") is not None:
        change = info["accuracy_int8"] - info["accuracy_pruned"]
        print(
            f"int8 ONNX accuracy {info['accuracy_int8']:.4f} ({100 * change:+.2f} points vs the "
            f"pruned fp32 model, {info['n_eval']} examples of {info.get('eval_split', 'eval')})",
            file=sys.stderr,
        )


def _add_task_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--task", required=required, help="sst5, mnli, or custom (with --data-dir)")
    p.add_argument("--data-dir", help="folder of <split>.jsonl/.csv files (default: bundled/hub)")
    p.add_argument("--text-columns", help="custom task: comma-separated text column(s)")
    # not required (`cahp run --config`): "label" then comes from the file or RunConfig
    p.add_argument(
        "--label-column", default="label" if required else None, help="custom task: label column"
    )
    p.add_argument("--num-labels", type=int, help="custom task: number of labels")


def _add_knee_args(p: argparse.ArgumentParser, shape: bool = True) -> None:
    p.add_argument(
        "--knee-curve",
        help="quality (default: the clustering-quality curve over k, the paper's) or "
        "performance (the run's measured masked-accuracy curve)",
    )
    if shape:
        p.add_argument(
            "--knee-shape",
            help="concave (default: the authors' kneed call, concave and increasing) or auto "
            "(guess the shape from the fit; not the paper's)",
        )


def _add_rule_args(p: argparse.ArgumentParser) -> None:
    from cahp_core.choices import SELECTION_RULES

    p.add_argument(
        "--rule",
        choices=SELECTION_RULES,
        help="which heads to keep once the knee says how many: complementary (default, the "
        "paper: the most salient head per cluster), salience-radius (most salient first, "
        "skipping heads close to one already kept) or mmr (salience-diversity trade-off); "
        "see docs/selection.md",
    )
    p.add_argument(
        "--radius-quantile",
        type=float,
        help="salience-radius: heads closer than this quantile of all pairwise head distances "
        "count as redundant (default 0.1)",
    )
    p.add_argument(
        "--mmr-lambda",
        type=float,
        help="mmr: weight of salience against diversity in [0, 1] (default 0.3, chosen on SST-5 validation data; 1 = the "
        "gradient ranking)",
    )


def _add_cluster_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quality",
        help="mss (default: the authors' mean simplified silhouette) or simplified-silhouette "
        "(nearest other medoid; this project's earlier curve)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        help="number of clustering seeds (default 5: --seed, --seed+1, ...); export uses the "
        "seed whose kept heads are closest to all the others",
    )


def _text_columns(args) -> tuple[str, ...] | None:
    return tuple(c.strip() for c in args.text_columns.split(",")) if args.text_columns else None


def _load_task(args, max_train=None, max_eval=None, seed: int = 42):
    from cahp_core.data import load_task

    return load_task(
        args.task,
        data_dir=args.data_dir,
        max_train=max_train,
        max_eval=max_eval,
        seed=seed,
        text_columns=_text_columns(args),
        label_column=args.label_column,
        num_labels=args.num_labels,
    )


def cmd_finetune(args) -> int:
    from cahp_core.atomic import write_json_atomic
    from cahp_core.model.loading import save_model_folder
    from cahp_core.model.training import FinetuneConfig, finetune_pretrained

    task = _load_task(args, args.max_train, args.max_eval, args.seed)
    loaded, report = finetune_pretrained(
        args.model,
        task,
        FinetuneConfig(args.epochs, args.lr, args.batch_size, seed=args.seed),
        max_length=args.max_length,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model_folder(loaded, out)
    write_json_atomic(out / "finetune.json", report)
    print(json.dumps({k: report[k] for k in ("accuracy", "macro_f1", "n", "split")}))
    return 0


def cmd_evaluate(args) -> int:
    from cahp_core.data import tokenize_records
    from cahp_core.method.specs import parse_head_spec, removed_to_keep
    from cahp_core.model.heads import head_layout
    from cahp_core.model.loading import load_model
    from cahp_core.model.training import evaluate

    task = _load_task(args, max_eval=args.max_eval, seed=args.seed)
    loaded = load_model(args.model_dir, task.spec.num_labels, device=args.device)
    split = args.split or task.spec.eval_split
    if split not in task.splits:
        raise CAHPError(f"split {split!r} not found; available: {', '.join(task.splits)}")
    records = task.splits[split]
    if args.max_eval and split != task.spec.eval_split:
        from cahp_core.data import subset

        records = subset(records, args.max_eval, args.seed)
    features = tokenize_records(records, loaded.tokenizer, task.spec, args.max_length)
    keep = None
    if args.mask:
        layout = head_layout(loaded.model)
        removed = parse_head_spec(args.mask, layout.n_layers, layout.max_heads)
        keep = removed_to_keep(removed, layout.n_layers, layout.max_heads)
    metrics = evaluate(
        loaded.model, loaded.tokenizer, features, keep=keep, show_progress=not args.json
    )
    if args.json:
        print(json.dumps(metrics))
    else:
        print(
            f"{split}: accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  n={metrics['n']}"
        )
    return 0


def cmd_prune(args) -> int:
    import copy

    from cahp_core.method.specs import parse_head_spec, removed_to_keep
    from cahp_core.model.heads import head_layout
    from cahp_core.model.loading import LoadedModel, count_parameters, load_model, num_labels_of
    from cahp_core.model.onnx_export import ONNX_FILE, export_onnx_report
    from cahp_core.model.pruning import remove_heads, save_pruned

    source = Path(args.model_dir)
    if not (source / "config.json").is_file():
        raise CAHPError(
            f"{source} is not a model folder (no config.json); pass the --out of `cahp finetune`"
        )
    loaded = load_model(source, num_labels=num_labels_of(source), device="cpu")
    layout = head_layout(loaded.model)
    keep = removed_to_keep(
        parse_head_spec(args.remove, layout.n_layers, layout.max_heads),
        layout.n_layers,
        layout.max_heads,
    )
    before = count_parameters(loaded.model)
    pruned = LoadedModel(
        remove_heads(copy.deepcopy(loaded.model), keep), loaded.tokenizer, str(source)
    )
    extra = {"source": str(source), "method": "manual", "command": args.command_line}

    def add_onnx(folder: Path, head_map: dict) -> None:  # inside the staging folder
        if args.onnx or args.quantize:
            report = export_onnx_report(
                pruned.model, pruned.tokenizer, folder / ONNX_FILE, quantize=args.quantize
            )
            head_map["cahp"]["onnx"] = report.to_dict()  # in the record and the card

    out = save_pruned(pruned, keep, args.out, extra=extra, complete=add_onnx)
    after = count_parameters(pruned.model)
    print(
        json.dumps(
            {
                "heads_kept": int(keep.sum()),
                "heads_total": int(keep.size),
                "params_full": before,
                "params_pruned": after,
                "out": str(out),
            }
        )
    )
    return 0


def cmd_run(args) -> int:
    from cahp_core.runs.config import file_config
    from cahp_core.runs.pipeline import run_pipeline

    if args.task is None and args.config is None:
        raise CAHPError("pass --task (sst5, mnli or custom) or --config with a run's settings")
    config = file_config(
        args.config,
        args.preset,
        model=args.model,
        task=args.task,
        data_dir=args.data_dir,
        text_columns=_text_columns(args),
        label_column=args.label_column,
        num_labels=args.num_labels,
        max_train=args.max_train,
        max_eval=args.max_eval,
        epochs=args.epochs,
        prune_epochs=args.prune_epochs,
        learning_rate=args.lr,
        degree=args.degree,
        knee_curve=args.knee_curve,
        knee_shape=args.knee_shape,
        rule=args.rule,
        radius_quantile=args.radius_quantile,
        mmr_lambda=args.mmr_lambda,
        clustering=args.clustering,
        distance=args.distance,
        quality=args.quality,
        n_seeds=args.seeds,
        seed=args.seed,
        device=args.device,
        onnx=args.onnx or None,
        quantize=args.quantize,
        salience_fraction=args.salience_fraction,
        trust_remote_code=args.trust_remote_code or None,
    )
    printer = ProgressPrinter(
        args.progress_json, runs_root=Path(args.out).parent, preset=args.preset
    )
    summary = run_pipeline(config, args.out, progress=printer)
    printer.finish()
    _print_summary(summary, args.out)
    return 0


SUMMARY_KEYS = (
    "heads_total",
    "heads_kept",
    "kept_per_layer",
    "knee",
    "degree",
    "knee_curve",
    "rule",
    "knee_fallback",
    "consensus_seed",
    "heads_by_seed",
    "accuracy_full",
    "accuracy_masked",
    "accuracy_pruned",
)


def _print_summary(summary: dict, out: str) -> None:
    heads = summary["knee_spread"]["heads"]
    print(
        f"knee k={summary['knee']} ({summary['knee_curve']} curve, degree {summary['degree']}): "
        f"{summary['heads_kept']} heads kept (consensus of seeds {summary['seeds']}; "
        f"{heads['min']}-{heads['max']} heads across seeds)",
        file=sys.stderr,
    )
    print(json.dumps({k: summary[k] for k in SUMMARY_KEYS}))
    print(f"summary: {Path(out) / 'summary.json'}", file=sys.stderr)


def cmd_recluster(args) -> int:
    from cahp_core.runs.pipeline import recluster_run

    printer = ProgressPrinter(args.progress_json, runs_root=Path(args.run).parent)
    summary = recluster_run(
        args.run,
        printer,
        n_seeds=args.seeds,
        quality=args.quality,
        degree=args.degree,
        knee_curve=args.knee_curve,
        rule=args.rule,
        radius_quantile=args.radius_quantile,
        mmr_lambda=args.mmr_lambda,
    )
    printer.finish()
    _print_summary(summary, args.run)
    return 0


def cmd_diagnose(args) -> int:
    from cahp_core.runs.pipeline import diagnose_run

    result = diagnose_run(args.run, ProgressPrinter(stages=("diagnostics",)))
    agreement = ", ".join(f"{d.upper()} {v:.2f}" for d, v in result["mean_agreement"].items())
    print(
        f"split-half agreement (adjusted Rand, 1 = identical): {agreement}; JM distances vs "
        f"shuffled labels: Spearman {result['shuffled_correlation']:.2f}",
        file=sys.stderr,
    )
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(result))
    return 0


def cmd_export(args) -> int:
    from cahp_core.runs.pipeline import export_with_degree
    from cahp_core.runs.stages import EXPORT_STAGES

    def announce(record: dict) -> None:
        fallback = " (fallback: " + record["knee_reason"] + ")" if record["knee_fallback"] else ""
        heads = record["knee_spread"]["heads"]
        print(
            f"degree {record['degree']}, {record['knee_curve']} knee: k={record['knee']}"
            f"{fallback}, {record['heads_kept']} of {record['heads_total']} heads kept "
            f"(per layer {record['kept_per_layer']}; seed {record['consensus_seed']} is the "
            f"consensus of {len(record['seeds'])}, {heads['min']}-{heads['max']} heads across seeds)",
            flush=True,
        )

    printer = ProgressPrinter(
        args.progress_json, stages=EXPORT_STAGES, runs_root=Path(args.run).parent
    )
    info = export_with_degree(
        args.run,
        args.degree,
        args.out,
        knee_curve=args.knee_curve,
        rule=args.rule,
        radius_quantile=args.radius_quantile,
        mmr_lambda=args.mmr_lambda,
        onnx=args.onnx,
        quantize=args.quantize,
        progress=printer,
        announce=announce,
    )
    printer.finish()
    _print_int8(info)
    print(
        json.dumps(
            {
                k: info[k]
                for k in (
                    "degree",
                    "knee_curve",
                    "rule",
                    "knee",
                    "heads_kept",
                    "accuracy_masked",
                    "accuracy_pruned",
                    "params_pruned",
                    "accuracy_int8",
                )
                if k in info
            }
        )
    )
    return 0


def cmd_baseline(args) -> int:
    from cahp_core.method.baselines import gradient_selection, random_selection
    from cahp_core.runs.pipeline import load_context

    ctx = load_context(args.run, ProgressPrinter(stages=("finetune", "salience", "baseline")))
    with ctx.run.lock():
        salience = ctx.result("salience")  # read from the run folder when it is done
        n_layers, n_heads = salience.raw.shape
        if args.method == "gradient":
            keep = gradient_selection(
                salience.raw, args.heads, normalise_per_layer=not args.no_layer_norm
            )
        else:
            if not 1 <= args.heads <= n_layers * n_heads:
                raise CAHPError(
                    f"--heads must be between 1 and {n_layers * n_heads}; got {args.heads}"
                )
            keep = random_selection(n_layers, n_heads, args.heads, args.seed)
        from cahp_core.runs.exporting import export_selection

        info = export_selection(
            ctx,
            keep,
            args.out,
            onnx=args.onnx,
            quantize=args.quantize,
            stage="baseline",
            extra={
                "method": args.method,
                "seed": args.seed,
                "normalise_per_layer": args.method == "gradient" and not args.no_layer_norm,
                "command": args.command_line,
            },
        )
    print(
        json.dumps(
            {
                k: info[k]
                for k in (
                    "method",
                    "heads_kept",
                    "kept_per_layer",
                    "accuracy_masked",
                    "accuracy_pruned",
                )
            }
        )
    )
    return 0


def cmd_bundle(args) -> int:
    from cahp_core.runs.results import make_bundle

    command = f"cahp bundle {args.run} --out {args.out}"
    out = make_bundle(args.run, args.out, command=args.recipe or command)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"bundle written to {out} ({size / 1e6:.2f} MB, no weights)")
    return 0


def dashboard_app() -> Path:
    """The dashboard's entry script, from a checkout, an editable install or a wheel."""
    from importlib.util import find_spec

    spec = find_spec("cahp_studio.dashboard")
    if spec is None or spec.origin is None:
        raise CAHPError(
            "the dashboard package cahp_studio.dashboard is not installed; reinstall CAHP "
            "Studio (pip install cahp-studio, or pip install -e . in a checkout)"
        )
    return Path(spec.origin).parent / "app.py"


def cmd_dashboard(args) -> int:
    from streamlit.web import cli as stcli

    sys.argv = [
        "streamlit",
        "run",
        str(dashboard_app()),
        "--server.address",
        args.address,
        "--server.port",
        str(args.port),
        "--browser.gatherUsageStats",
        "false",
    ]
    return stcli.main()


def version() -> str:
    """``cahp-studio X.Y.Z`` of the installed distribution."""
    from importlib import metadata

    try:
        return f"cahp-studio {metadata.version('cahp-studio')}"
    except metadata.PackageNotFoundError:
        return "cahp-studio (not installed: running from a source tree)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cahp",
        description="CAHP Studio: Complementary Attention Head Pruning for BERT-family encoders.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show library logs")
    parser.add_argument("--version", action="version", version=version())
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    p = add("finetune", "fine-tune an encoder on a task and save the model folder")
    p.add_argument("--model", required=True, help="minilm-l6, a local folder, or a hub id")
    _add_task_args(p)
    p.add_argument("--max-train", type=int, help="use a seeded subset of N training examples")
    p.add_argument("--max-eval", type=int, help="use a seeded subset of N evaluation examples")
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a hub model's own code (off by default)",
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_finetune)

    p = add("evaluate", "accuracy and macro-F1 of a model folder, optionally with heads masked")
    p.add_argument("model_dir")
    _add_task_args(p)
    p.add_argument("--split", help="split name (default: the task's evaluation split)")
    p.add_argument("--max-eval", type=int)
    p.add_argument("--mask", help='heads to mask, e.g. "0:0,1,2;3:5" (layer:heads)')
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help='print {"accuracy", "macro_f1", "n"}')
    p.set_defaults(func=cmd_evaluate)

    p = add("prune", "physically remove heads from a model folder and save the pruned model")
    p.add_argument("model_dir")
    p.add_argument("--remove", required=True, help='heads to remove, e.g. "0:0,1,2;3:5"')
    p.add_argument("--out", required=True)
    p.add_argument("--onnx", action="store_true", help="also write model.onnx")
    _add_quantize_arg(p)
    p.set_defaults(func=cmd_prune)

    p = add("run", "run the whole CAHP pipeline (resumable) and write RUN/summary.json")
    p.add_argument("--model", help="minilm-l6 (default), a local folder, or a hub id")
    _add_task_args(p, required=False)
    p.add_argument("--preset", choices=tuple(PRESETS), help=f"default: paper. {PRESET_HELP}")
    p.add_argument(
        "--config",
        help="a JSON file of run settings (RunConfig's fields, as in a run's manifest.json "
        "'config'); flags given here override it",
    )
    p.add_argument("--degree", type=int, help="polynomial degree of the knee fit (default 6)")
    _add_knee_args(p)
    _add_rule_args(p)
    p.add_argument("--clustering", choices=CLUSTERING_METHODS)
    p.add_argument("--distance", choices=DISTANCE_METHODS)
    _add_cluster_args(p)
    p.add_argument("--max-train", type=int)
    p.add_argument("--max-eval", type=int)
    p.add_argument("--epochs", type=float)
    p.add_argument("--prune-epochs", type=float)
    p.add_argument("--lr", type=float, help="learning rate of both fine-tunes (paper: 2e-5)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda or auto")
    p.add_argument(
        "--salience-fraction", type=float, help="share of training batches for salience (0, 1]"
    )
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow a hub model's own code (off by default)",
    )
    p.add_argument("--onnx", action="store_true", help="also export the pruned model to ONNX")
    _add_quantize_arg(p)
    p.add_argument("--out", required=True, help="run folder (re-run the same command to resume)")
    p.add_argument("--progress-json", help="also write live progress to this JSON file")
    p.set_defaults(func=cmd_run)

    p = add(
        "export", "re-select with another degree from a run's cached stages, prune, fine-tune, save"
    )
    p.add_argument("run")
    p.add_argument("--degree", type=int, required=True)
    _add_knee_args(p, shape=False)
    _add_rule_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--onnx", action="store_true", help="also write the fused model.onnx")
    _add_quantize_arg(p)
    p.add_argument("--progress-json", help="also write live progress to this JSON file")
    p.set_defaults(func=cmd_export)

    p = add(
        "diagnose",
        "check CAHP's premise on a run: split-half agreement of the clusters and the class "
        "signal of the JM distances (RUN/diagnostics.json)",
    )
    p.add_argument("run")
    p.set_defaults(func=cmd_diagnose)

    p = add(
        "recluster",
        "re-cluster a run (e.g. one made by an earlier version) and redo the stages after it, "
        "keeping its fine-tuned model",
    )
    p.add_argument("run")
    p.add_argument("--degree", type=int, help="polynomial degree of the knee fit")
    _add_knee_args(p, shape=False)
    _add_rule_args(p)
    _add_cluster_args(p)
    p.add_argument("--progress-json", help="also write live progress to this JSON file")
    p.set_defaults(func=cmd_recluster)

    p = add(
        "baseline", "gradient or random head pruning at a budget, with the run's fine-tuned model"
    )
    p.add_argument("run")
    p.add_argument("--method", choices=("gradient", "random"), required=True)
    p.add_argument("--heads", type=int, required=True, help="number of heads to keep")
    p.add_argument("--seed", type=int, default=0, help="seed of the random selection")
    p.add_argument(
        "--no-layer-norm",
        action="store_true",
        help="gradient: rank the raw importances globally instead of dividing each layer's by "
        "their L2 norm first (Michel et al.'s default)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--onnx", action="store_true", help="also write the fused model.onnx")
    _add_quantize_arg(p)
    p.set_defaults(func=cmd_baseline)

    p = add("bundle", "copy a finished run's analysis artefacts (no weights) for the dashboard")
    p.add_argument("run")
    p.add_argument("--out", required=True)
    p.add_argument("--recipe", help="the command that produced the run, recorded in bundle.json")
    p.set_defaults(func=cmd_bundle)

    p = add("dashboard", "start the Streamlit dashboard (localhost only by default)")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1")
    p.set_defaults(func=cmd_dashboard)
    return parser


def _stop_on_sigterm(signum, frame) -> None:
    """SIGTERM (the dashboard's cancel button) unwinds like Ctrl-C: temporary folders are
    removed, the run lock is released and no half-written folder is left."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    import shlex
    import signal
    import threading

    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["cahp", *argv])
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main_thread else None
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        return _dispatch(args)
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args) -> int:
    """Run the chosen command; engine errors become one ``error:`` line and exit code 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    if not args.verbose:
        from cahp_core.model.training import quiet_transformers

        quiet_transformers()
    try:
        return int(args.func(args) or 0)
    except CAHPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
