"""The `linklm` command line.

    linklm data [--dataset NAME] [--path P] [--config FILE] [key=value ...]
    linklm gnn  [--kge-dim D] [--epochs N] [--run NAME] [--config FILE] [key=value ...]
    linklm run  [--config FILE] [--force] [key=value ...]

Mistakes a user can fix end with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import platform
import sys
import warnings
from pathlib import Path
from typing import Any

from linklm.config import Config, load_config
from linklm.errors import UserError

EXIT_USER_ERROR = 2


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ARG001
    return f"linklm: warning: {message}\n"


def _config(args: argparse.Namespace, extra: list[str]) -> Config:
    overrides = list(args.overrides)
    overrides += [f"{key}={value}" for key, value in extra if value is not None]
    return load_config(args.config, overrides)


def _prepare_data(cfg: Config, force: bool):
    from linklm.data import MovieLensManager

    manager = MovieLensManager(config=cfg.data, force_recompute=force)
    return manager


def cmd_data(args: argparse.Namespace) -> int:
    from linklm.data.graph import format_summary

    cfg = _config(args, [("data.dataset", args.dataset), ("data.path", args.path)])
    manager = _prepare_data(cfg, args.force)
    origin = "cache" if manager.from_cache else "built"
    print(f"dataset {cfg.data.dataset} ({origin}: {manager.folder})")
    print(format_summary(manager.summary(), manager.seconds))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from linklm.data.graph import format_summary
    from linklm.io import write_json

    cfg = _config(args, [])
    run_dir = cfg.run_dir
    write_json(run_dir / "config.json", cfg.to_dict())
    manager = _prepare_data(cfg, args.force)
    summary = manager.summary()
    print(
        f"[data] {cfg.data.dataset}: {summary['users']:,} users, {summary['movies']:,} movies, "
        f"{summary['ratings']:,} ratings ({'cache' if manager.from_cache else 'built'}, {manager.seconds:.2f} s)"
    )
    print(format_summary(summary))
    _update_results(cfg, "dataset", {"name": cfg.data.dataset, **summary})
    gen = _train_gnn(cfg, manager, args.force)
    _update_results(cfg, "gnn", {**gen.metrics, "kge_dim": cfg.gnn.kge_dim, "folder": str(gen.folder)})
    print(f"wrote {run_dir / 'results.json'}")
    return 0


def _update_results(cfg: Config, section: str, values: dict[str, Any]) -> None:
    """Merge one stage's results into <run>/results.json (written atomically)."""
    import json

    from linklm.io import write_json

    path = cfg.run_dir / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[section] = values
    results["environment"] = _environment()
    write_json(path, results)


def _train_gnn(cfg: Config, manager, force: bool):
    from linklm.gnn import GraphRepresentationGenerator

    gen = GraphRepresentationGenerator(
        manager.data, manager.train_data, manager.val_data, manager.test_data,
        config=cfg.gnn, cache_dir=Path(cfg.data.cache_dir) / "gnn", force_recompute=force,
    )  # fmt: skip
    if gen.trained:
        print(f"[gnn] loaded {gen.folder}")
    else:
        gen.train_model()
    m = gen.metrics
    print(
        f"[gnn] d={cfg.gnn.kge_dim}: val AUC {m['val_auc']:.4f} (epoch {m['best_epoch']}), "
        f"test AUC {m['test_auc']:.4f}, {m['train_seconds']:.1f} s training"
    )
    return gen


def cmd_gnn(args: argparse.Namespace) -> int:
    from linklm.io import write_json

    cfg = _config(args, [("gnn.kge_dim", args.kge_dim), ("gnn.epochs", args.epochs), ("name", args.run)])
    write_json(cfg.run_dir / "config.json", cfg.to_dict())
    manager = _prepare_data(cfg, force=False)
    gen = _train_gnn(cfg, manager, args.force)
    _update_results(cfg, "gnn", {**gen.metrics, "kge_dim": cfg.gnn.kge_dim, "folder": str(gen.folder)})
    print(f"wrote {cfg.run_dir / 'results.json'}")
    return 0


def _environment() -> dict[str, str]:
    import pandas
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pandas": pandas.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "machine": platform.machine(),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="linklm", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config overriding the defaults")
        p.add_argument("--force", action="store_true", help="rebuild cached artifacts")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.seed=7")

    p = sub.add_parser("data", help="prepare a MovieLens dataset and print its split sizes")
    p.add_argument("--dataset", help="ml-100k (embedded), ml-1m, ml-10m, ml-latest-small, ml-20m, ml-25m, ml-32m")
    p.add_argument("--path", help="a local zip or folder in any GroupLens or RecBole layout")
    common(p)
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("gnn", help="train the GNN (or load it) and write its val/test AUC")
    p.add_argument("--kge-dim", type=int, help="KGE dimension (gnn.kge_dim)")
    p.add_argument("--epochs", type=int, help="training epochs (gnn.epochs)")
    p.add_argument("--run", help="run name: results go to runs/NAME/results.json (default: default)")
    common(p)
    p.set_defaults(func=cmd_gnn)

    p = sub.add_parser("run", help="the main job: every stage on the configured data")
    common(p)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    args = build_parser().parse_args(argv)
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
