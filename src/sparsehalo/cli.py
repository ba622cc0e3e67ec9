"""The ``sparsehalo`` command line: thin commands over the library.

Every command has ``--help``.  Bad input prints one line ``sparsehalo: error: ...`` and exits with
code 2 (3 for a diverged run); set ``SPARSEHALO_DEBUG=1`` to see the traceback of an unexpected error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from .errors import SparsehaloError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2)."""

    def error(self, message: str):  # noqa: D401
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _sparsity_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 <= v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sparsities must be in [0, 1), got {text!r}")
    return values


def _sparsity(text: str) -> float:
    values = _sparsity_list(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"give one sparsity, got {text!r}")
    return values[0]


def cmd_train(args) -> int:
    from . import config as config_mod
    from .training import train
    from .training.distributed import from_env

    world = from_env()

    overrides = list(args.set or [])
    if args.device:
        overrides.append(f'run.device="{args.device}"')
    if args.data_dir:
        overrides.append(f'run.data_dir="{args.data_dir}"')
    if args.quiet:
        overrides.append("run.progress=false")
    seeds = args.seeds if args.seeds is not None else [None]
    configs = [config_mod.load(args.config, overrides + ([f"train.seed={s}"] if s is not None else [])) for s in seeds]
    if args.nproc != 1:
        if not 1 <= args.nproc <= 1024:
            raise SparsehaloError(f"--nproc must be in 1..1024, got {args.nproc}")
        if world.distributed:
            raise SparsehaloError("--nproc inside a process group (torchrun already started this one); drop --nproc")
        from .training.launch import launch
        from .training.validate import validate

        for cfg in configs:  # a bad config is one line here, before any process starts
            validate(cfg)
        return launch(_without_nproc(sys.argv[1:] if args.argv is None else args.argv), args.nproc)
    echo = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    for cfg in configs:  # all configs are checked before the first run starts
        run_dir = cfg.run_dir(args.out)
        summary = train(cfg, run_dir, echo=echo if world.main else (lambda s: None))
        if not world.main:
            continue
        if not args.quiet and summary.get("test_accuracy") is not None:
            print(f"seed {cfg.train.seed}: final test accuracy {summary['test_accuracy']:.2f}%", file=sys.stderr)
        print(run_dir)
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"expected distinct seeds, got {text!r}")
    return seeds


def cmd_report(args) -> int:
    from .posthoc import one_line_warnings
    from .results import make_report

    with one_line_warnings():
        written = make_report(args.run_dirs, args.out, title=args.title, scales=not args.no_scales, force=args.force)
    for path in written.values():
        print(path)
    return 0


def cmd_prune(args) -> int:
    from .posthoc import format_structured, one_line_warnings, prune_run, prune_structured_run

    if args.structured:
        if args.sparsity is not None or args.min_density is not None:
            raise SparsehaloError("--structured takes --channels or --macs, not --sparsity / --min-density")
        with one_line_warnings():
            s = prune_structured_run(args.run_dir, args.channels, args.macs, scope=args.scope, device=args.device, force=args.force)
        print(json.dumps(s, indent=2) if args.json else format_structured(s))
        return 0
    if args.channels is not None or args.macs is not None:
        raise SparsehaloError("--channels / --macs are targets of a structured prune: add --structured")
    if args.sparsity is None:
        raise SparsehaloError("prune needs --sparsity S (or --structured with --channels / --macs)")
    with one_line_warnings():
        s = prune_run(args.run_dir, args.sparsity, scope=args.scope, min_density=args.min_density, device=args.device, force=args.force)
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    print(f"{'layer':<24}{'total':>12}{'non-zero':>12}{'sparsity':>10}")
    for row in s["layers"]:
        print(f"{row['name']:<24}{row['total']:>12,}{row['nonzero']:>12,}{100 * row['sparsity']:>9.2f}%")
    print(f"sparsity requested {100 * s['sparsity_requested']:.2f}%, measured {100 * s['sparsity_measured']:.4f}% of {s['denominator']}")
    print(f"natural sparsity before pruning (|w| <= {s['natural_eps']:g}): {100 * s['natural_sparsity_before']:.2f}%")
    print(f"test accuracy: {s['test_accuracy_before']:.2f}% before, {s['test_accuracy_after']:.2f}% after ({s['scope']} magnitude pruning, no fine-tuning)")
    if s["empty_layers"]:
        print(f"warning: layers emptied by the threshold: {', '.join(s['empty_layers'])}")
    print(s["checkpoint"])
    return 0


def cmd_sweep(args) -> int:
    from .posthoc import one_line_warnings, sweep_run

    with one_line_warnings():
        rows = sweep_run(args.run_dir, args.sparsities, scope=args.scope, device=args.device)
    print(f"{'requested':>10}{'measured':>10}{'test acc':>10}")
    for r in rows:
        print(f"{100 * r['sparsity_requested']:>9.2f}%{100 * r['sparsity_measured']:>9.2f}%{r['test_accuracy']:>9.2f}%")
    print(Path(args.run_dir) / "sweep.csv")
    return 0


def cmd_eval(args) -> int:
    from .posthoc import eval_checkpoint, eval_external_checkpoint, one_line_warnings

    with one_line_warnings():
        if args.model:
            kwargs = {"depth": args.depth} if args.depth is not None else {}
            r = eval_external_checkpoint(args.checkpoint, args.model, args.num_classes, kwargs, data=args.data,
                                         data_dir=args.data_dir, device=args.device)
        else:
            if args.data or args.depth is not None:
                raise SparsehaloError("--data and --depth describe an external checkpoint: give --model too")
            r = eval_checkpoint(args.checkpoint, device=args.device, data_dir=args.data_dir)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(r["table"])
    if args.model:
        stored = "none stored" if r.get("acc") is None else f"{r['acc']:.2f}% stored in the file"
        print(f"Conv2d weight sparsity {100 * r['conv_sparsity']:.2f}%; all parameters {100 * r['all_sparsity']:.2f}%; accuracy: {stored}")
    if r.get("test_accuracy") is not None:
        print(f"test accuracy {r['test_accuracy']:.2f}% ({r.get('dataset')}, {r.get('model')})")
    elif r.get("note"):
        print(f"not evaluated: {r['note']}")
    return 0


def cmd_analyze_energy(args) -> int:
    from .posthoc import energy_run, one_line_warnings

    with one_line_warnings():
        r = energy_run(args.run_dir, out=args.out, device=args.device)
    if args.json:
        print(json.dumps({k: v for k, v in r.items() if k != "spectra"}, indent=2))
        return 0
    print(f"{'layer':<28}{'channels':>9}{'90% energy':>12}{'99% energy':>12}")
    for name, row in r["layers"].items():
        print(f"{name:<28}{row['channels']:>9}{row['n90']:>6} ({100 * row['frac90']:.0f}%){row['n99']:>6} ({100 * row['frac99']:.0f}%)")
    print(r["plot"])
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    extra = []
    if args.device:
        extra.append(f'run.device="{args.device}"')
    if args.quiet:
        extra.append("run.progress=false")
    echo = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr))
    print(run_demo(args.out, epochs=args.epochs, extra=extra, echo=echo))
    return 0


def _input_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected positive comma-separated integers like 1,28,28, got {text!r}")
    return shape


def cmd_export(args) -> int:
    from .export import export_run, format_report
    from .posthoc import one_line_warnings

    if args.input_shape is not None and args.format != "onnx":
        raise SparsehaloError("--input-shape applies to --format onnx only")
    with one_line_warnings():
        report = export_run(args.run_dir, args.format, args.out, sparsity=args.sparsity, scope=args.scope,
                            min_density=args.min_density, fp16=args.fp16, force=args.force, input_shape=args.input_shape,
                            channels=args.channels, macs=args.macs)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(format_report(report))
    return 0


def cmd_download(args) -> int:
    from .data import download_dataset

    print(download_dataset(args.name, args.dest, base_url=args.base_url))
    return 0


def config_keys_help() -> str:
    """The ``train --help`` reference of every config key, generated from the config dataclasses."""
    from .config import describe

    rows = describe()
    width = max(len(k) for k, *_ in rows)
    lines = ["config keys (set in the TOML file or with --set KEY=VALUE; values are TOML):"]
    for key, type_name, default, text in rows:
        shown = "" if default is None else f" [default {default!r}]"
        lines.append(f"  {key:<{width}}  {type_name}{shown}: {text}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from .data import downloadable
    from .demo import DEMO_EPOCHS
    from .export.api import FORMATS
    from .models import names as model_names
    from .pruning import SCOPES

    p = _Parser(prog="sparsehalo", description="Train sparse networks with learned shrinkage penalties (HALO), prune and measure them.")
    p.add_argument("--version", action="version", version=f"sparsehalo {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train one config (resumes an interrupted run)", description="Train the experiment of a TOML config; prints the run directory as the last line.",
                       epilog=config_keys_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", help="TOML config file (e.g. configs/mnist_lenet300_halo.toml) or a bundled config's name (e.g. mnist_lenet300_halo)")
    t.add_argument("--out", default="runs", help="parent directory of run directories (default: runs)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config key, e.g. --set train.epochs=15 (repeatable)")
    t.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    t.add_argument("--data-dir", help="directory holding the dataset files (default: bundled MNIST / $SPARSEHALO_DATA_DIR)")
    t.add_argument("--seeds", type=_seed_list, default=None, help="replicates, e.g. 0,1,2 (overrides train.seed; one run directory each)")
    t.add_argument("--quiet", action="store_true", help="print only the run directory")
    t.add_argument("--nproc", type=int, default=1, metavar="N", help="train in N local processes (data parallel, "
                   "gloo on CPU, NCCL on GPUs; the same run and results directory as one process; several machines: torchrun)")
    t.set_defaults(func=cmd_train)

    pr = sub.add_parser("prune", help="prune a run's final weights by magnitude (no fine-tuning)", description="Prune a trained run to an exact sparsity and measure it.")
    pr.add_argument("run_dir")
    pr.add_argument("--sparsity", type=_sparsity, default=None, help="fraction of prunable weights to remove, e.g. 0.98")
    pr.add_argument("--structured", action="store_true", help="remove whole channels / neurons by group norm and write the "
                    "smaller model to RUN_DIR/slim/ (target --channels or --macs)")
    pr.add_argument("--channels", type=_sparsity, default=None, help="--structured: share of prunable channels / neurons to remove")
    pr.add_argument("--macs", type=_sparsity, default=None, help="--structured: share of the MACs per example to remove, e.g. 0.5")
    pr.add_argument("--scope", choices=SCOPES.names(), default="global")
    pr.add_argument("--min-density", type=float, default=None, help="keep at least this fraction of every layer "
                    "(other options than the defaults name the file, e.g. pruned/sparsity-0.98-min0.05.pt)")
    pr.add_argument("--force", action="store_true", help="replace a pruned checkpoint of the same options that holds other results")
    pr.add_argument("--json", action="store_true", help="print the summary as JSON")
    pr.add_argument("--device")
    pr.set_defaults(func=cmd_prune)

    sw = sub.add_parser("sweep", help="accuracy against sparsity (sweep.csv + sweep.png)")
    sw.add_argument("run_dir")
    sw.add_argument("--sparsities", type=_sparsity_list, default=_sparsity_list("0.5,0.8,0.9,0.95,0.98,0.99,0.995"))
    sw.add_argument("--scope", choices=SCOPES.names(), default="global")
    sw.add_argument("--device")
    sw.set_defaults(func=cmd_sweep)

    ev = sub.add_parser("eval", help="evaluate a checkpoint (ours, or another code's with --model)",
                        description="Evaluate a sparsehalo checkpoint on its test set, or measure an external one "
                                    "(e.g. --model resnet --depth 50 --num-classes 100) and evaluate it with --data.")
    ev.add_argument("checkpoint", help="a run's checkpoint.pt, a pruned/*.pt file, a sparse export *.sparse.safetensors "
                    "(evaluated on the dataset its stored config names; sparsity only without one), or with --model an "
                    "external .pth / .pth.tar")
    ev.add_argument("--model", choices=model_names(), help="external checkpoint: registered model name")
    ev.add_argument("--depth", type=int, help="external checkpoint: ResNet depth")
    ev.add_argument("--num-classes", type=int, default=10, help="external checkpoint: number of classes (default 10)")
    ev.add_argument("--data", help="external checkpoint: dataset to evaluate on (e.g. cifar100); default: none")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--device")
    ev.add_argument("--data-dir")
    ev.set_defaults(func=cmd_eval)

    an = sub.add_parser("analyze", help="analyses of a trained run")
    an_sub = an.add_subparsers(dest="analysis", required=True, parser_class=_Parser)
    en = an_sub.add_parser("energy", help="eigen-spectrum of each conv layer's pooled outputs over the test set",
                           description="For each Conv2d: covariance of globally pooled outputs over the test set, "
                                       "normalized eigenvalues, cumulative plot (energy.png, energy.json).")
    en.add_argument("run_dir")
    en.add_argument("--out", default=None, help="output directory (default: the run directory)")
    en.add_argument("--json", action="store_true")
    en.add_argument("--device")
    en.set_defaults(func=cmd_analyze_energy)

    d = sub.add_parser("demo", help="HALO vs. no penalty on the bundled MNIST, pruned without fine-tuning")
    d.add_argument("--out", default="runs/demo")
    d.add_argument("--epochs", type=int, default=DEMO_EPOCHS)
    d.add_argument("--device")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_demo)

    rp = sub.add_parser("report", help="tables and plots (mean +- std over seeds) from run directories",
                        description="Aggregate any set of run directories (or their parents) into report.md, summary.csv and plots.")
    rp.add_argument("run_dirs", nargs="+", help="run directories or directories holding them")
    rp.add_argument("--out", required=True, help="output directory")
    rp.add_argument("--title", default=None)
    rp.add_argument("--no-scales", action="store_true", help="skip the learned-scale plots of HALO runs")
    rp.add_argument("--force", action="store_true", help="replace files in --out that sparsehalo did not write "
                    "(by default only files of an earlier report, unchanged since, are replaced)")
    rp.set_defaults(func=cmd_report)

    ex = sub.add_parser("export", help="write a run's (pruned) model compactly (sparse), as a plain state dict (dense) or as ONNX",
                        description="sparse: safetensors-layout file with CSR / bitmask / relative-index encodings "
                                    "(load with sparsehalo.load_sparse); dense: a plain state_dict for the unmodified model class; "
                                    "onnx: the dense graph with a dynamic batch dimension (needs sparsehalo[onnx]).")
    ex.add_argument("run_dir")
    ex.add_argument("--format", choices=list(FORMATS), required=True)
    ex.add_argument("--sparsity", type=_sparsity, default=None, help="export the weights `sparsehalo prune --sparsity S` wrote (either scope)")
    ex.add_argument("--scope", choices=SCOPES.names(), default=None, help="with --sparsity: which prune, when both scopes exist")
    ex.add_argument("--min-density", type=float, default=None, help="with --sparsity: the prune made with this --min-density")
    ex.add_argument("--fp16", action="store_true", help="sparse format: store values in fp16")
    ex.add_argument("--channels", type=_sparsity, default=None, help="slim format: the `prune --structured --channels C` to export")
    ex.add_argument("--macs", type=_sparsity, default=None, help="slim format: the `prune --structured --macs M` to export")
    ex.add_argument("--input-shape", type=_input_shape, default=None, metavar="C,H,W",
                    help="onnx format: one input without the batch dimension (default: the run's dataset's)")
    ex.add_argument("--out", default=None, help="output file (default: RUN_DIR/export/...)")
    ex.add_argument("--force", action="store_true", help="replace an existing output file with other content "
                    "(exporting the same content again always succeeds)")
    ex.add_argument("--json", action="store_true")
    ex.set_defaults(func=cmd_export)

    dl = sub.add_parser("download", help="download a dataset with sha256 checks")
    dl.add_argument("name", choices=downloadable())
    dl.add_argument("--dest", default=None, help="root directory; files go to DEST/NAME (default: ~/.cache/sparsehalo/NAME)")
    dl.add_argument("--base-url", default=None, help="mirror URL holding the .gz files")
    dl.set_defaults(func=cmd_download)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = None if argv is None else [str(a) for a in argv]
    try:
        return args.func(args)
    except SparsehaloError as exc:
        print(f"sparsehalo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a file we cannot read or write: a read-only folder, a full disk, a path that is a file
        where = f": {exc.filename!r}" if exc.filename else ""
        print(f"sparsehalo: error: {exc.strerror or type(exc).__name__}{where}", file=sys.stderr)
        return 2
    except RecursionError:
        print("sparsehalo: error: input nested too deeply to read", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("sparsehalo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure: one line unless debugging
        if os.environ.get("SPARSEHALO_DEBUG"):
            raise
        print(f"sparsehalo: internal error: {type(exc).__name__}: {exc} (set SPARSEHALO_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
