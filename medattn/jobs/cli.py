"""`python -m medattn.jobs`: start, list, stop, resume and read the log of background jobs; the
`run` command is the worker's entry point (`medattn.jobs.worker.work`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medattn.errors import MedattnError
from medattn.inference import models_dir
from medattn.jobs import manager as _manager
from medattn.jobs.manager import JobManager, JobRunning, precompute_spec, train_spec
from medattn.jobs.options import add_metric_options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medattn.jobs", description=_manager.__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="jobs folder (default .cache/jobs)")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start a precompute job in the background")
    start.add_argument("--dataset", required=True)
    start.add_argument("--checkpoints", nargs="+", required=True)
    start.add_argument("--methods", nargs="+", default=["saliency", "integrated_gradients", "gradcam", "wildcat", "attention"])
    start.add_argument("--split", default="test", help="train, val, test or all")
    start.add_argument("--images", nargs="*", help="only these image ids")
    start.add_argument("--out", help="run folder (default .cache/runs/<dataset>-<hash>)")
    start.add_argument("--device", default="auto")
    start.add_argument("--app-params", action="store_true", help="the app's explainer settings (fast PDA)")
    add_metric_options(start)
    trainer = commands.add_parser("start-train", help="start a training (medattn.train) in the background")
    trainer.add_argument("--dataset", required=True)
    trainer.add_argument("--arch", required=True, help="backbone, e.g. resnet18, densenet121, mobilenet_v2")
    trainer.add_argument("--head", default="linear")
    trainer.add_argument("--out", help="new checkpoint path without suffix; default ARCH_HEAD in your models folder "
                         "(MEDATTN_MODELS, default ~/.local/share/medattn/models)")
    trainer.add_argument("--preset", default="goncalves", help="goncalves, wang or aggarwal (medattn.train PRESETS)")
    trainer.add_argument("--epochs", type=int)
    trainer.add_argument("--input-size", type=int, default=224)
    trainer.add_argument("--batch-size", type=int)
    trainer.add_argument("--lr", type=float)
    trainer.add_argument("--device", default="auto")
    commands.add_parser("list", help="every job with its state and progress")
    for name in ("stop", "resume", "log"):
        commands.add_parser(name).add_argument("job")
    commands.add_parser("run", help=argparse.SUPPRESS).add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "run":
        from medattn.jobs.worker import work  # torch and the models: only the worker needs them

        return work(args.folder)
    manager = JobManager(args.root)
    if args.command == "start":
        try:
            from medattn.jobs.precompute import metric_choices  # torch: only when starting a job

            methods, faithfulness = metric_choices(args)
            status = manager.start(precompute_spec(args.dataset, args.checkpoints, methods, args.images,
                                                   None if args.split == "all" else args.split, args.out, None,
                                                   args.device, args.app_params,
                                                   faithfulness.fields() if faithfulness else None))
        except (JobRunning, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"started {status.id} (pid {status.pid}); follow it with: python -m medattn.jobs log {status.id}")
    elif args.command == "start-train":
        options = {k: v for k, v in (("batch_size", args.batch_size), ("lr", args.lr)) if v is not None}
        try:
            out = args.out or str(models_dir() / f"{args.arch}_{args.head}")
            status = manager.start(train_spec(args.dataset, args.arch, args.head, out, args.preset, args.epochs,
                                              args.input_size, args.device, **options))
        except (JobRunning, ValueError, MedattnError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"started {status.id} (pid {status.pid}); follow it with: python -m medattn.jobs log {status.id}")
    elif args.command == "list":
        for s in manager.list():
            rate = f"{s.rate:.2f} {s.unit}/s" if s.rate else "–"
            eta = f"ETA {s.eta_s:.0f} s" if s.eta_s is not None and s.active else ""
            print(f"{s.id}  {s.state:<11} {s.stage + ' ' if s.stage else ''}{s.done}/{s.total} {s.unit}  {rate}  {eta}  {s.title}")
    else:
        try:
            known = manager.folder(args.job).is_dir() and (manager.status(args.job) or manager.spec(args.job))
            if not known:
                raise ValueError(f"no job {args.job} in {manager.root} (`python -m medattn.jobs list` shows them)")
            if args.command == "stop":
                print(f"stopped in {manager.stop(args.job):.2f} s")
            elif args.command == "resume":
                print(f"resumed {manager.resume(args.job).id}")
            else:
                print(manager.log_tail(args.job, 40))
        except (JobRunning, ValueError, MedattnError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0
