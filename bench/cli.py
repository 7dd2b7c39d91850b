"""The `kdbench` command line: run an experiment, rebuild a report, inspect registries."""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kdbench", description="Knowledge-distillation benchmarks for NLG on Ray")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run an experiment spec (default: the built-in 'default' preset)")
    run.add_argument("spec", nargs="?", help="path to a spec YAML (omit to use --preset)")
    run.add_argument("--preset", default=None, help="built-in spec: default (≈12 min on 2 CPUs), smoke (≈1.5 min) or full (GPU-scale)")
    run.add_argument("--address", default=None, help="connect to an existing Ray cluster (e.g. auto or HOST:PORT)")
    run.add_argument("--run-dir", default=None, help="run directory, a path or a storage URI (an existing one "
                                                     "resumes: finished trials are kept)")
    run.add_argument("--resume", default=None, metavar="RUN_DIR",
                     help="continue an interrupted run with its own stored spec: finished trials are kept, "
                          "interrupted ones continue from their checkpoints")
    run.add_argument("--allow-changed-spec", action="store_true",
                     help="let a run dir of another spec take this one: changed trials run under new keys")
    run.add_argument("--runs-dir", default=None, help="parent of new run directories (overrides storage.runs_dir)")
    run.add_argument("--artifacts-dir", default=None, help="shared artifact store (overrides storage.artifacts_dir)")
    run.add_argument("--tuned", default=None, metavar="BEST_YAML",
                     help="run the configurations `kdbench tune` chose (its best.yaml); without a spec, the "
                          "tuned spec")
    run.add_argument("--study", default=None, metavar="S1..S8|all",
                     help="run one of the paper's findings as a study (CPU size; `all`: the eight at --scale full)")
    run.add_argument("--scale", default=None, choices=["cpu", "full"],
                     help="a study's size: cpu (≤ 30 min on 2 cores, the default for one study) or full (GPU/cluster)")
    run.add_argument("--tasks", default=None, help="a study on other registered tasks, comma-separated (e.g. qg,xsum)")
    run.add_argument("--tasks-from", default=None, metavar="SPEC",
                     help="a study on the tasks of another spec (its tasks: block: your own data, paper tasks)")
    run.add_argument("--verbose", action="store_true", help="show Ray's own logs")

    tune = sub.add_parser("tune", help="search hyperparameters of every (task, ratio, method) on dev (the "
                                       "spec's search: block); writes best.yaml for `run --tuned`")
    tune.add_argument("spec", nargs="?", help="path to a spec YAML with a search: block (or --preset)")
    tune.add_argument("--preset", default=None, help="built-in spec (needs a search: block)")
    tune.add_argument("--address", default=None, help="connect to an existing Ray cluster (e.g. auto or HOST:PORT)")
    tune.add_argument("--run-dir", default=None,
                      help="run directory (an existing one resumes: finished groups are kept)")
    tune.add_argument("--runs-dir", default=None, help="parent of new run directories (overrides storage.runs_dir)")
    tune.add_argument("--artifacts-dir", default=None, help="shared artifact store (overrides storage.artifacts_dir)")
    tune.add_argument("--out", default=None, help="also write best.yaml here (default: RUN_DIR/best.yaml only)")
    tune.add_argument("--verbose", action="store_true", help="show Ray's own logs")

    rep = sub.add_parser("report", help="(re)build the report of one or more run directories")
    rep.add_argument("run_dirs", nargs="+", help="run directories: paths or storage URIs")
    rep.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")

    val = sub.add_parser("validate", help="check a spec without running anything")
    val.add_argument("spec", nargs="?")
    val.add_argument("--preset", default=None)

    exp = sub.add_parser("export", help="copy the best student of each task (chosen on dev, never on test) "
                                        "with its model card")
    exp.add_argument("run_dir", help="a run directory (path or storage URI) whose spec had "
                                     "storage.save_students: true")
    exp.add_argument("--best", action="store_true", required=True, help="export the dev-best student per task")
    exp.add_argument("--task", default=None, help="only this task")
    exp.add_argument("--to", required=True, help="target directory or storage URI (one folder per task)")
    exp.add_argument("--by", default="dev", choices=["dev", "dev_loss"], help="the dev criterion")
    exp.add_argument("--overwrite", action="store_true", help="replace an existing export")
    exp.add_argument("--push-to-hub", default=None, metavar="REPO",
                     help="also upload the export to this Hugging Face Hub repo (needs --task with several tasks)")

    sub.add_parser("list", help="list built-in tasks, methods, presets and studies")
    return p


def _load(args):
    from bench.spec import SpecError, load_preset, load_spec

    if args.spec and args.preset:
        raise SpecError("give either a spec file or --preset, not both")
    spec = load_spec(args.spec) if args.spec else load_preset(args.preset or "default")
    return _with_storage(args, spec)


def _with_storage(args, spec):
    """The spec with the command line's storage overrides."""
    storage = {}
    if getattr(args, "runs_dir", None):
        storage["runs_dir"] = args.runs_dir
    if getattr(args, "artifacts_dir", None):
        storage["artifacts_dir"] = args.artifacts_dir
    if storage:
        spec = spec.model_copy(update={"storage": spec.storage.model_copy(update=storage)})
    return spec


def _stored_spec(run_dir: str) -> str:
    """The spec a run dir stored (written to a local temporary file when the run dir is remote)."""
    import tempfile

    from bench.spec import SpecError
    from bench.storage import Location

    stored = Location.of(run_dir).join("spec.yaml")
    try:
        text = stored.read_text()
    except FileNotFoundError:
        raise SpecError(f"--resume {run_dir}: no spec.yaml there (not a kdbench run dir?)") from None
    if stored.is_local:
        return str(stored.local_path)
    tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    tmp.write(text)
    tmp.close()
    return tmp.name


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bench.environment import quiet_ray_env

    quiet_ray_env(verbose=getattr(args, "verbose", False))  # before anything imports ray
    from bench.errors import RunStopped
    from bench.spec import SpecError

    try:
        if args.command == "run" and args.tuned is not None:
            from bench.runner import run
            from bench.tune import load_tuned, tuned_cells, tuned_stage_spec

            if args.study or args.resume:
                raise SpecError("--tuned runs the configurations of a best.yaml, without --study; a tuned run is "
                                "resumed with `kdbench run --resume RUN_DIR` alone (it stored its cells)")
            tuned = load_tuned(args.tuned)
            if not args.spec and not args.preset:  # the spec the configurations were tuned on
                args.spec = tuned.get("spec")
            spec = _load(args)
            cells = tuned_cells(spec, tuned, args.tuned)
            print(f"tuned configurations from {args.tuned} (tune run {tuned.get('tune_run')}): {len(cells)} cell(s)",
                  flush=True)
            run(tuned_stage_spec(spec, cells), run_dir=args.run_dir, address=args.address, verbose=args.verbose,
                cells=cells, allow_changed_spec=args.allow_changed_spec)
        elif args.command == "run" and args.study:
            from bench.runner import run
            from bench.studies import load_study, study_names

            if args.spec or args.preset or args.resume:
                raise SpecError("--study runs a shipped study spec; give no spec, --preset or --resume")
            names = study_names() if args.study == "all" else [args.study]
            scale = args.scale or ("full" if args.study == "all" else "cpu")
            tasks_from = None
            if args.tasks_from:
                from bench.spec import load_spec

                tasks_from = [t.model_dump(exclude_unset=True) for t in load_spec(args.tasks_from).tasks]
            tasks = args.tasks.split(",") if args.tasks else None
            for name in names:
                spec = _with_storage(args, load_study(name, scale, tasks, tasks_from))
                print(f"study {name} ({scale}): {spec.study['claim']}", flush=True)
                run(spec, run_dir=args.run_dir if len(names) == 1 else None, address=args.address,
                    verbose=args.verbose, allow_changed_spec=args.allow_changed_spec)
        elif args.command == "run":
            from bench.runner import run

            if args.resume:
                if args.spec or args.preset:
                    raise SpecError("--resume takes the run's own stored spec; give no spec or --preset")
                args.spec, args.run_dir = _stored_spec(args.resume), args.resume
            run(_load(args), run_dir=args.run_dir, address=args.address, verbose=args.verbose,
                allow_changed_spec=args.allow_changed_spec)
        elif args.command == "tune":
            from bench.tune import tune

            tune(_load(args), run_dir=args.run_dir, address=args.address, verbose=args.verbose, out=args.out)
        elif args.command == "export":
            from bench.export import export_best, push_to_hub

            try:
                exported = export_best(args.run_dir, args.to, task=args.task, by=args.by, overwrite=args.overwrite)
                if args.push_to_hub:
                    if len(exported) > 1:
                        raise ValueError(f"{len(exported)} tasks exported; push one at a time with --task")
                    print(f"pushed to https://huggingface.co/{push_to_hub(exported[0], args.push_to_hub)}")
            except (ValueError, OSError, ConnectionError) as err:
                print(f"kdbench export: {str(err).splitlines()[0]}", file=sys.stderr)
                return 1
        elif args.command == "validate":
            spec = _load(args)
            print(f"spec {spec.name!r} is valid: {len(spec.tasks)} task(s), {len(spec.ratios)} ratio(s), "
                  f"{len(spec.methods)} method(s), {len(spec.seeds)} seed(s)")
        elif args.command == "report":
            from reports import build_report

            from bench.storage import Location

            for d in args.run_dirs:
                if not Location.of(d).join("spec.yaml").exists() and not Location.of(d).join("rows").exists() \
                        and not Location.of(d).join("results.jsonl").exists():
                    raise SpecError(f"run directory not found (no spec.yaml, rows/ or results.jsonl): {d}")
            print(f"report: {build_report(args.run_dirs, args.out)}")
        elif args.command == "list":
            from bench.distill.methods import METHODS
            from bench.spec import PRESETS
            from tasks import get_task, task_names

            print("tasks:")
            for name in task_names():
                print(f"  {name:16s} {get_task(name).description}")
            print("methods:")
            for m in METHODS.values():
                print(f"  {m.name:16s} {m.description}")
            print("presets:", ", ".join(PRESETS))
            from bench.studies import load_study, study_names

            print("studies (kdbench run --study NAME):")
            for name in study_names():
                print(f"  {name:4s} {load_study(name).study['claim']}")
    except SpecError as err:
        print(f"kdbench: {err}", file=sys.stderr)
        return 2
    except RunStopped as err:  # a grid or search stopped early; what it wrote is kept
        print(f"kdbench: stopped: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
