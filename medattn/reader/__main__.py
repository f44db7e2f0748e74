"""Command line: make an admin account, export a study, or import a JSON export.

    python -m medattn.reader add-admin --db DB --name NAME   (asks the password twice, never echoed)
    python -m medattn.reader export --db DB --study ID --format {csv,json,coco,mrmc,imrmc,key,boxes} --out FILE
    python -m medattn.reader import --db DB --json FILE [--key KEY.csv]
    python -m medattn.reader migrate --from DB --to DB [--study ID ...]
    python -m medattn.reader backup --db FILE --out FILE   (SQLite's online backup, while readers save)

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
    args = parser.parse_args(argv)
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
