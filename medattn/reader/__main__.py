"""Command line: make an admin account, export a study, import a JSON export, or make a demo study.

    python -m medattn.reader add-admin --db DB --name NAME   (asks the password twice, never echoed)
    python -m medattn.reader export --db DB --study ID --format {csv,json,coco,mrmc,imrmc,key,boxes} --out FILE
    python -m medattn.reader import --db DB --json FILE [--key KEY.csv]
    python -m medattn.reader migrate --from DB --to DB [--study ID ...]
    python -m medattn.reader backup --db FILE --out FILE   (SQLite's online backup, while readers save)
    python -m medattn.reader demo-study --db DB [--dataset DIR] [--checkpoint CKPT] [--readers 5] [--images 40]
                                        [--finding CLASS] [--done 1.0] [--seed 0]
        (a with-/without-AI study read by SIMULATED readers, to see Study admin's analysis first)

DB is an SQLite file's path or an SQLAlchemy URL (postgresql://user@host/medattn).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from medattn.errors import MedattnError

DB_HELP = ("reader-study database: an SQLite file's path (made when missing), or an SQLAlchemy URL "
           "such as postgresql://user@host/medattn (a URL only when it has a scheme)")


def main(argv: list[str] | None = None) -> int:
    from medattn.reader.export import FORMATS, export_study, import_study
    from medattn.store.annotations import AnnotationStore
    from medattn.store.annotations.engine import database_url, is_sqlite

    parser = argparse.ArgumentParser(prog="python -m medattn.reader", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    admin = commands.add_parser("add-admin", help="make a Study admin account (the first one, before `streamlit run`)")
    admin.add_argument("--db", required=True, help=DB_HELP)
    admin.add_argument("--name", required=True)
    export = commands.add_parser("export", help="write one export of a study")
    export.add_argument("--db", required=True, help=DB_HELP)
    export.add_argument("--study", required=True, help="study id")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--out", required=True, help="file to write (written to a temporary file, then renamed)")
    export.add_argument("--with-key", action="store_true",
                        help="json and boxes: include the image ids (json: a full backup that re-imports with its "
                             "images; not for sharing)")
    restore = commands.add_parser("import", help="re-create a study from a JSON export")
    restore.add_argument("--db", required=True, help=DB_HELP)
    restore.add_argument("--json", required=True)
    restore.add_argument("--key", help="the study's key export (--format key), for a JSON written without image ids")
    migrate = commands.add_parser("migrate", help="copy studies as they are (ids, accounts, answers) to another "
                                                  "database, e.g. an SQLite file to the site's PostgreSQL")
    migrate.add_argument("--from", dest="source", required=True, help=DB_HELP)
    migrate.add_argument("--to", dest="target", required=True, help=DB_HELP)
    migrate.add_argument("--study", action="append", help="study id (repeatable; default every study and account)")
    backup = commands.add_parser("backup", help="a consistent copy of an SQLite study database, taken while it is in "
                                                "use (the app also keeps copies in DB.backups/)")
    backup.add_argument("--db", required=True, help="the SQLite file")
    backup.add_argument("--out", required=True, help="the copy to write")
    demo = commands.add_parser(
        "demo-study", help="create a with-/without-AI detection study read by SIMULATED readers (sim-reader-1, …; "
                           "medattn.reader.simulate), to see Study admin's MRMC analysis and ROC curves before "
                           "recruiting readers; labelled as simulated everywhere")
    demo.add_argument("--db", required=True, help=DB_HELP)
    demo.add_argument("--dataset", help="dataset folder (default: the demo dataset, built when missing)")
    demo.add_argument("--checkpoint", help="the with-AI arm's model (default: checkpoints/demo_resnet18_wildcat)")
    demo.add_argument("--method", default="saliency", help="the with-AI arm's map (default: saliency)")
    demo.add_argument("--readers", type=int, default=5, help="simulated readers (default 5)")
    demo.add_argument("--images", type=int, default=40, help="test images, half with the finding (default 40; "
                                                             "each is read with and without AI)")
    demo.add_argument("--finding", help="the target class (default: any finding vs none)")
    demo.add_argument("--done", type=float, default=1.0, help="fraction of each reader's cases read, in their order "
                                                              "(default 1: all; below 0.5 only first sessions)")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo-study":
        return _demo_study(args)
    if args.command == "backup":
        from medattn.store.annotations.backup import backup_sqlite

        try:
            print(f"wrote {backup_sqlite(Path(args.db), Path(args.out))}")
        except MedattnError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    if args.command == "migrate":
        return _migrate(args)
    url = database_url(args.db)
    if args.command == "export" and is_sqlite(url) and not Path(url.database).is_file():
        print(f"error: no database at {args.db}", file=sys.stderr)
        return 2
    try:
        store = AnnotationStore(args.db)
        if args.command == "add-admin":
            password = getpass.getpass(f"Password for {args.name} (8+ characters): ")
            if getpass.getpass("Again: ") != password:
                print("error: the two passwords differ; nothing was saved", file=sys.stderr)
                return 2
            store.add_admin(args.name, password)
            print(f"admin {args.name.strip()} can sign in once the app runs with MEDATTN_STUDY_DB={args.db}")
        elif args.command == "export":
            path = export_study(store, args.study, args.format, args.out, with_key=args.with_key)
            print(f"wrote {path}")
        else:
            print(f"imported study {import_study(store, args.json, key=args.key)} from {args.json}")
    except MedattnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _demo_study(args: argparse.Namespace) -> int:
    from medattn.data.demo import ensure_demo
    from medattn.inference import CHECKPOINT_DIR
    from medattn.reader.errors import AnalysisNotReadyError
    from medattn.reader.mrmc_study import study_mrmc
    from medattn.reader.simulate import simulate_study
    from medattn.store.annotations import AnnotationStore

    try:
        store = AnnotationStore(args.db)
        dataset = Path(args.dataset) if args.dataset else ensure_demo()
        checkpoint = args.checkpoint or str(CHECKPOINT_DIR / "demo_resnet18_wildcat")
        study_id = simulate_study(store, dataset, checkpoint, readers=args.readers, images=args.images,
                                  target_class=args.finding, method=args.method, seed=args.seed, done=args.done)
        print(f"created study {study_id} ({store.study(study_id)['name']}) in {store.where}: "
              f"{args.readers} simulated reader{'s' if args.readers != 1 else ''}; open Study admin with MEDATTN_STUDY_DB={args.db}")
        try:
            result = study_mrmc(store, study_id)
        except AnalysisNotReadyError as error:
            print(f"analysis: {error}")
            return 0
    except MedattnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    low, high = result["ci"]
    print(f"AUC without AI {result['auc']['without_ai']:.3f}, with AI {result['auc']['with_ai']:.3f}; difference "
          f"{result['difference']:+.3f} (95% CI {low:+.3f} to {high:+.3f}), F = {result['f']:.2f} on "
          f"({result['df1']}, {result['df2']:.1f}) df, p = {result['p']:.4f} (Obuchowski–Rockette, random readers "
          "and cases; simulated readers)")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from medattn.store.annotations import AnnotationStore
    from medattn.store.annotations.engine import database_url, is_sqlite
    from medattn.store.annotations.migrate import copy_studies

    url = database_url(args.source)
    if is_sqlite(url) and not Path(url.database).is_file():
        print(f"error: no database at {args.source}", file=sys.stderr)
        return 2
    try:
        source, target = AnnotationStore(args.source), AnnotationStore(args.target)
        copied = copy_studies(source, target, args.study)
    except MedattnError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"copied {len(copied)} stud{'y' if len(copied) == 1 else 'ies'} to {target.where}: {', '.join(copied)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
