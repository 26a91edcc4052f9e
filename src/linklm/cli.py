"""The `linklm` command line.

    linklm data  [--dataset NAME] [--path P]                     prepare data, print split sizes
    linklm data  --interactions F --items F [--user-column C] [--item-column C] [--text-columns A,B]
                                                                 the same for any user-item dataset
    linklm gnn   [--kge-dim D] [--epochs N] [--run NAME]         train (or load) the GNN
    linklm train --model vanilla|prompt|embedding [--run NAME]   train and test one classifier
    linklm run   [--config FILE]                                 every stage (make run)
    linklm sweep [--preset small|full] [--dims 2,8] [--seeds 0,1,2]  KGE-dimension sweep + significance
    linklm report --run runs/default                             rebuild the report from results
    linklm explain --run runs/default [--samples N]              attention, Shapley, PCA of trained models

Every command takes --config FILE, --force and key=value overrides (e.g. data.seed=7).
Mistakes a user can fix end with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import warnings

from linklm.config import LLM_KINDS, Config, load_config
from linklm.errors import UserError

EXIT_USER_ERROR = 2


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ARG001
    return f"linklm: warning: {message}\n"


def _config(args: argparse.Namespace, extra: list[tuple[str, object]]) -> Config:
    overrides = list(args.overrides)
    overrides += [f"{key}={value}" for key, value in extra if value is not None]
    return load_config(args.config, overrides)


def cmd_data(args: argparse.Namespace) -> int:
    from linklm.data import dataset_name, open_dataset
    from linklm.data.graph import format_summary

    tables = [("interactions", args.interactions), ("items", args.items), ("user_column", args.user_column),
              ("item_column", args.item_column), ("text_columns", _names(args.text_columns))]  # fmt: skip
    # JSON is YAML: a path or a column name stays a string, whatever it looks like ("yes", "1e3").
    tables = [(f"data.{key}", json.dumps(value)) for key, value in tables if value is not None]
    cfg = _config(args, [("data.dataset", args.dataset), ("data.path", args.path), *tables])
    manager = open_dataset(cfg.data, force=args.force)
    origin = "cache" if manager.from_cache else "built"
    print(f"dataset {dataset_name(cfg.data)} ({origin}: {manager.folder})")
    print(format_summary(manager.summary(), manager.seconds))
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


def cmd_gnn(args: argparse.Namespace) -> int:
    from linklm.experiment.pipeline import prepare_data, train_gnn
    from linklm.io import write_json

    cfg = _config(args, [("gnn.kge_dim", args.kge_dim), ("gnn.epochs", args.epochs), ("name", args.run)])
    write_json(cfg.run_dir / "config.json", cfg.to_dict())
    train_gnn(cfg, prepare_data(cfg), force=args.force)
    print(f"wrote {cfg.run_dir / 'results.json'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from linklm.experiment.pipeline import run_models
    from linklm.runtime import Runtime

    cfg = _config(args, [("name", args.run)])
    kinds = ["embedding_frozen", "embedding_e2e"] if args.model == "embedding" else [args.model]
    run_models(cfg, kinds, force=args.force, gnn=False)
    Runtime.current().say(f"wrote {cfg.run_dir / 'results.json'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from linklm.experiment.pipeline import run_models
    from linklm.report.report import build_report
    from linklm.runtime import Runtime

    cfg = _config(args, [])
    run_models(cfg, list(cfg.llm.models), force=args.force)
    if not Runtime.current().main:
        return 0
    page = build_report(cfg.run_dir)
    print(f"[report] wrote {cfg.run_dir / 'results.json'}, {cfg.run_dir / 'report.md'} and {page}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from linklm.config import CONTROL_KINDS, TEXT_ONLY
    from linklm.experiment.sweep import format_table, load_preset, run_sweep
    from linklm.report.report import build_report

    preset = load_preset(args.preset)
    preset_overrides = [f"{section}.{key}={value}" for section, values in preset["overrides"].items()
                        for key, value in values.items()]  # fmt: skip
    args.overrides = preset_overrides + list(args.overrides)
    cfg = _config(args, [("name", args.run)])
    dims = _int_list(args.dims, "--dims") if args.dims else preset["dims"]
    seeds = _int_list(args.seeds, "--seeds") if args.seeds else preset["seeds"]
    models = args.models.split(",") if args.models else preset["models"]
    arms = [k for k in LLM_KINDS if k not in (*TEXT_ONLY, *CONTROL_KINDS, "kge_mlp")]
    for m in models:
        if m not in arms:
            raise UserError(f"--models: {m!r} is not one of {', '.join(arms)}")
    controls = _names(args.controls) if args.controls is not None else preset["controls"]
    for c in controls:
        if c not in CONTROL_KINDS:
            raise UserError(f"--controls: {c!r} is not one of {', '.join(CONTROL_KINDS)}")
    if any(d <= 0 for d in dims) or not seeds:
        raise UserError("--dims must be positive integers and --seeds must name at least one seed")
    vanilla_all = preset["vanilla_all"] if args.vanilla_all is None else args.vanilla_all
    result = run_sweep(cfg, dims, seeds, models, controls, force=args.force, vanilla_all=vanilla_all)
    print(format_table(result))
    print(result["answer"])
    if (cfg.run_dir / "results.json").is_file():
        build_report(cfg.run_dir)
    print(f"[sweep] wrote {cfg.run_dir / 'sweep' / 'sweep.json'} ({result['seconds']:.0f} s)")
    return 0


def _int_list(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, got {text!r}") from None


def cmd_report(args: argparse.Namespace) -> int:
    from linklm.report.report import build_report

    page = build_report(args.run)
    print(f"[report] wrote {page} and {page.with_suffix('.md')}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from linklm.explain.run import explain_run

    result = explain_run(args.run, samples=args.samples)
    print(f"[explain] wrote {args.run}/explain/explain.json and its figures ({result['seconds']:.0f} s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linklm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config overriding the defaults")
        p.add_argument("--force", action="store_true", help="redo cached stages")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.seed=7")

    p = sub.add_parser("data", help="prepare a dataset (MovieLens, or any user-item files) and print its split sizes")
    p.add_argument("--dataset", help="ml-100k (embedded), ml-1m, ml-10m, ml-latest-small, ml-20m, ml-25m, ml-32m")
    p.add_argument("--path", help="a local zip or folder in any GroupLens or RecBole layout")
    p.add_argument("--interactions", help="any user-item dataset: one interaction a row (.csv, .tsv, .tab, .parquet)")
    p.add_argument("--items", help="its items: the item id column and the item text (.csv, .tsv, .tab, .parquet)")
    p.add_argument("--user-column", help="user id column of the interactions (default user_id)")
    p.add_argument("--item-column", help="item id column, the same in both files (default item_id)")
    p.add_argument("--text-columns", help="item columns the prompt shows, e.g. title,author (default: all but the id)")
    common(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("gnn", help="train the GNN (or load it) and write its val/test AUC")
    p.add_argument("--kge-dim", type=int, help="KGE dimension (gnn.kge_dim)")
    p.add_argument("--epochs", type=int, help="training epochs (gnn.epochs)")
    p.add_argument("--run", help="run name: results go to runs/NAME/results.json (default: default)")
    common(p)
    p.set_defaults(func=cmd_gnn)

    p = sub.add_parser("train", help="train one classifier, evaluate it on test, write results.json")
    p.add_argument("--model", required=True, choices=["vanilla", "prompt", "embedding", *LLM_KINDS[2:]],
                   help="embedding trains both embedding_frozen and embedding_e2e")  # fmt: skip
    p.add_argument("--run", help="run name: results go to runs/NAME/results.json (default: default)")
    common(p)
    p.set_defaults(func=cmd_train)

    _add_sweep(sub.add_parser("sweep", help="KGE-dimension sweep with seeds and a significance test against vanilla"),
               common)  # fmt: skip

    p = sub.add_parser("report", help="rebuild report.md and report.html of a run (never retrains)")
    p.add_argument("--run", default="runs/default", help="the run folder (default: runs/default)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("explain", help="attention, Shapley values and PCA of a run's trained models (never trains)")
    p.add_argument("--run", default="runs/default", help="the run folder (default: runs/default)")
    p.add_argument("--samples", type=int, help="test pairs for attention and PCA (default 200; Shapley on a third)")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("run", help="the main job: data, GNN, every classifier, results.json, report")
    common(p)
    p.set_defaults(func=cmd_run)
    return parser


def _add_sweep(p: argparse.ArgumentParser, common) -> None:
    p.add_argument("--preset", default="default",
                   help="full (= default: d 2..128, 10 seeds, every control, vanilla_all; an estimated 18-33 h "
                        "on 2 CPU cores) or small (d 4, 16, 10 seeds, subsampled; 41 min measured)")  # fmt: skip
    p.add_argument("--dims", help="comma-separated KGE dimensions, e.g. 2,8,32")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--models", help="comma-separated: prompt, embedding_frozen, embedding_e2e")
    p.add_argument("--controls", help="comma-separated controls (control_degree, control_shuffled, "
                                      "control_random; empty: none); default: the preset's")  # fmt: skip
    p.add_argument("--vanilla-all", action=argparse.BooleanOptionalAction,
                   help="also train vanilla on every train edge, once per seed (default: the preset's; "
                        "full: yes)")  # fmt: skip
    p.add_argument("--run", help="run name (default: default): results go to runs/NAME/sweep/")
    common(p)
    p.set_defaults(func=cmd_sweep)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come anywhere, also after an option (argparse keeps only the first run).
    stray = [x for x in extra if x.startswith("-") or "=" not in x]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(getattr(args, "overrides", [])) + extra
    try:
        return args.func(args)
    except UserError as exc:
        print(f"linklm: error: {exc}", file=sys.stderr)
    except OSError as exc:  # a full disk, a read-only folder, a permission problem
        where = f"{exc.filename}: " if exc.filename else ""
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        print(f"linklm: error: {where}{reason}", file=sys.stderr)
    except KeyboardInterrupt:
        print("linklm: interrupted", file=sys.stderr)
        return 130
    return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
