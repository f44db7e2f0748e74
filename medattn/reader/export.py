"""Exports of a reader study that other tools read, and the re-import of the JSON export.

Every file starts with provenance (study, app version, checkpoint hashes, export time): `#`
comment lines in CSV files (`pandas.read_csv(comment="#")`, R `read.csv(comment.char="#")`),
an `info` / `provenance` object in JSON, free-text lines before "BEGIN DATA:" in iMRMC files.
Files are written to a temporary file in the target folder, fsynced and renamed. Cases appear
only under study-local ids; the image ids stay in the database (`with_key=True` adds them to
the JSON export for a full backup that re-imports with its images, and to the boxes export; the
"key" format is the case → image key itself, for the coordinator). A study whose cases make
some figures undefined (a rating study without negatives: N0 = 0) says so in every export's
provenance (`warnings`, from `medattn.reader.validity`).

Formats:
- "csv": current answers, one row per reader × case × question, with arm and seconds on case;
- "json": the whole study (spec, cases, panel key, reader orders, every event); `import_study`
  re-creates it and gives the same answers;
- "coco": reader boxes as COCO detection annotations (loads with `pycocotools.coco.COCO`);
  each annotation carries `reader`;
- "mrmc": columns reader, modality, case, truth, rating (MRMCaov's and RJafroc's long form;
  `case` numbers images, so the two arms of a crossed design share one);
- "imrmc": iMRMC's input file: description lines, `NR:`, `N0:`, `N1:`, `NM:`, `BEGIN DATA:`,
  then `readerID,caseID,modalityID,score` rows, truth rows as `-1,caseID,0,0|1` (as iMRMC writes them)
  (integer reader and case ids as RJafroc's reader requires; the header maps reader ids);
- "key": case_id → image_id, arm, MRMC case number and the case's meta (admin only);
- "boxes": every current reader box in a dataset's boxes.csv layout (`label` is the finding the
  reader named) with reader, arm and case_id columns; image_id only `with_key`.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from medattn import __version__
from medattn.reader.analysis import case_truth, checkpoint_name, reader_boxes, study_dataset
from medattn.reader.errors import ImportFormatError, StudyError
from medattn.reader.mrmc_study import mrmc_cases, mrmc_table
from medattn.reader.questions import check_questions
from medattn.reader.validity import study_warnings
from medattn.spreadsheet import neutral_csv, text_cell
from medattn.store.annotations import KINDS, AnnotationStore

FORMATS = ("csv", "json", "coco", "mrmc", "imrmc", "key", "boxes")
KEY_COLUMNS = ["case_id", "image_id", "arm", "mrmc_case", "checkpoint", "method", "target_class", "category"]
JSON_FORMAT = "medattn.reader-study"
JSON_VERSION = 1
MAX_IMPORT_BYTES = 256 * 2**20  # a study JSON, from the CLI or the Study admin's upload (medattn.ui.uploads)
MAX_NESTING = 8  # document → events → [i] → value → [box] → {x, y, …}: an export nests 5 deep


def provenance(store: AnnotationStore, study_id: str) -> dict:
    """{"study", "study_name", "created_at", "app_version", "checkpoint_hashes" {name: hash}, "exported_at"},
    and "warnings" (a list) when the study's cases make some of its figures undefined."""
    spec = store.study(study_id)
    key = store.panel_key(study_id)
    info = {"study": study_id, "study_name": spec["name"], "created_at": store.created_at(study_id),
            "app_version": __version__,
            "checkpoint_hashes": {checkpoint_name(r.checkpoint): r.checkpoint_hash for r in key.itertuples()},
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    warnings = study_warnings(spec, list(store.case_key(study_id)["image_id"]))
    if warnings:
        info["warnings"] = warnings
    return info


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to a temporary file beside `path`, fsync, and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _comment_header(info: dict) -> str:
    return "".join(f"# {key}: {json.dumps(value) if isinstance(value, (dict, list)) else value}\n"
                   for key, value in info.items())


def _iso(value: Any) -> str | None:
    return None if pd.isna(value) else pd.Timestamp(value).isoformat()


def _arms(store: AnnotationStore, study_id: str) -> dict[tuple[str, str], str]:
    table = store.reader_assignments(study_id)
    return {(r.reader, case): arm for r in table.itertuples() if r.arms for case, arm in r.arms.items()}


def to_csv(store: AnnotationStore, study_id: str) -> str:
    """Long CSV of current answers: reader, case_id, question_id, value (JSON), arm, shown_at,
    submitted_at, seconds, event_id."""
    frame = store.events(study_id, current_only=True)
    arms = _arms(store, study_id)
    out = pd.DataFrame({
        "reader": frame["reader"], "case_id": frame["case_id"], "question_id": frame["question_id"],
        "value": [json.dumps(v, sort_keys=True) for v in frame["value"]],
        "arm": [arms.get((r, c), "") for r, c in zip(frame["reader"], frame["case_id"])],
        "shown_at": frame["shown_at"].map(_iso), "submitted_at": frame["submitted_at"].map(_iso),
        "seconds": frame["seconds"].round(3), "event_id": frame["id"]})
    return _comment_header(provenance(store, study_id)) + neutral_csv(out)


def to_json(store: AnnotationStore, study_id: str, with_key: bool = False) -> str:
    """The whole study as JSON (see the module docstring); image ids only with `with_key`."""
    spec = {k: v for k, v in store.study(study_id).items() if k not in ("cases", "case_meta", "id", "revision")}
    key = store.case_key(study_id)
    events = store.events(study_id)
    document = {
        "format": JSON_FORMAT, "format_version": JSON_VERSION, "provenance": provenance(store, study_id),
        "study": spec,
        "cases": [{"case_id": r.case_id, "meta": r.meta, **({"image_id": r.image_id} if with_key else {})}
                  for r in key.itertuples()],
        "panels": store.panel_key(study_id).to_dict("records"),
        "readers": [{"reader": r.reader, "case_order": list(r.case_order), "arms": r.arms}
                    for r in store.reader_assignments(study_id).itertuples()],
        "events": [{"reader": e.reader, "case_id": e.case_id, "question_id": e.question_id, "value": e.value,
                    "shown_at": _iso(e.shown_at), "submitted_at": _iso(e.submitted_at),
                    "app_version": e.app_version, "checkpoint_hashes": e.checkpoint_hashes}
                   for e in events.sort_values("id").itertuples()],
    }
    return json.dumps(document, indent=1, sort_keys=False)


def to_coco(store: AnnotationStore, study_id: str, question_id: str = "boxes") -> str:
    """Reader boxes as COCO json: images are cases (`file_name` = case id; width and height
    from the dataset when it is present), one category per box label, `bbox` = [x, y, w, h]."""
    key = store.case_key(study_id)
    sizes: dict[str, tuple[int, int]] = {}
    try:
        images = study_dataset(store, study_id).images
        sizes = {r.image_id: (int(images.at[r.image_id, "width"]), int(images.at[r.image_id, "height"]))
                 for r in key.itertuples() if r.image_id in images.index}
    except StudyError:
        pass  # dataset moved: the boxes still export, without image sizes
    boxes = reader_boxes(store, study_id, question_id)
    labels = sorted(set(boxes["label"].astype(str))) or [store.study(study_id).get("target_class") or "finding"]
    category = {label: i + 1 for i, label in enumerate(labels)}
    image_ids = {case: i + 1 for i, case in enumerate(key["case_id"])}
    coco_images = []
    for r in key.itertuples():
        entry = {"id": image_ids[r.case_id], "file_name": r.case_id}
        if r.image_id in sizes:
            entry["width"], entry["height"] = sizes[r.image_id]
        coco_images.append(entry)
    annotations = [{"id": i + 1, "image_id": image_ids[b.case_id], "category_id": category[str(b.label)],
                    "bbox": [b.x, b.y, b.w, b.h], "area": b.w * b.h, "iscrowd": 0, "reader": b.reader}
                   for i, b in enumerate(boxes.itertuples())]
    document = {"info": {"description": f"reader boxes of study {study_id}", **provenance(store, study_id)},
                "images": coco_images, "annotations": annotations,
                "categories": [{"id": i, "name": label} for label, i in category.items()]}
    return json.dumps(document, indent=1)


def to_mrmc(store: AnnotationStore, study_id: str) -> str:
    return _comment_header(provenance(store, study_id)) + neutral_csv(mrmc_table(store, study_id))


def to_imrmc(store: AnnotationStore, study_id: str) -> str:
    table = mrmc_table(store, study_id)
    truth = case_truth(store, study_id).groupby(mrmc_cases(store, study_id)).first()
    rated = set(table["reader"])  # NR counts the readers in the data: iMRMC needs every one to have read
    readers = {name: i + 1 for i, name in enumerate(r for r in store.readers(study_id) if r in rated)}
    lines = [f"medattn reader study {study_id}"] + [line.rstrip() for line in
                                                   _comment_header(provenance(store, study_id)).splitlines()]
    lines += [f"# reader {i}: {text_cell(name)}" for name, i in readers.items()]
    lines += [f"NR: {len(readers)}", f"N0: {int((truth == 0).sum())}", f"N1: {int((truth == 1).sum())}",
              f"NM: {table['modality'].nunique()}", "BEGIN DATA:"]
    lines += [f"-1,{case},0,{int(t)}" for case, t in truth.items()]
    lines += [f"{readers[r.reader]},{r.case},{r.modality},{r.rating:g}" for r in table.itertuples()]
    return "\n".join(lines) + "\n"


def key_table(store: AnnotationStore, study_id: str) -> pd.DataFrame:
    """The case key: one row per case with KEY_COLUMNS (arm and meta fields empty where none)."""
    key = store.case_key(study_id)
    numbers = mrmc_cases(store, study_id)
    return pd.DataFrame({
        "case_id": key["case_id"], "image_id": key["image_id"], "arm": [m.get("arm", "") for m in key["meta"]],
        "mrmc_case": numbers.loc[key["case_id"]].to_numpy(),
        **{field: [str(m.get(field, "")) for m in key["meta"]] for field in KEY_COLUMNS[4:]}})[KEY_COLUMNS]


def to_key(store: AnnotationStore, study_id: str) -> str:
    return _comment_header(provenance(store, study_id)) + neutral_csv(key_table(store, study_id))


def to_boxes(store: AnnotationStore, study_id: str, with_key: bool = False) -> str:
    boxes = reader_boxes(store, study_id)
    columns = (["image_id"] if with_key else []) + ["label", "x", "y", "w", "h", "reader", "arm", "case_id"]
    return _comment_header(provenance(store, study_id)) + neutral_csv(boxes[columns])


def export_study(store: AnnotationStore, study_id: str, fmt: str, out: str | os.PathLike, with_key: bool = False) -> Path:
    """Write one export of `study_id` in format `fmt` (one of FORMATS) to `out`, atomically.
    `with_key`: image ids in the "json" and "boxes" exports (the "key" export always has them)."""
    if fmt not in FORMATS:
        raise StudyError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt in ("json", "boxes"):
        return write_atomic(out, (to_json if fmt == "json" else to_boxes)(store, study_id, with_key))
    text = {"csv": to_csv, "coco": to_coco, "mrmc": to_mrmc, "imrmc": to_imrmc, "key": to_key}[fmt]
    return write_atomic(out, text(store, study_id))


def _need(container: dict, field: str, kind: type | tuple, where: str) -> Any:
    if not isinstance(container, dict) or field not in container:
        raise ImportFormatError(f"{where}: missing field {field!r}")
    value = container[field]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ImportFormatError(f"{where}.{field}: expected {names}, got {type(value).__name__}")
    return value


def read_key(path: str | os.PathLike, name: str | None = None) -> dict[str, str]:
    """case_id → image_id from a "key" export (or any CSV with those two columns);
    ImportFormatError naming the file and the row at fault."""
    where = name or str(path)
    try:
        table = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ImportFormatError(f"{where}: cannot read the case key: {error}") from error
    missing = [c for c in ("case_id", "image_id") if c not in table.columns]
    if missing:
        raise ImportFormatError(f"{where}: the case key lacks column(s) {missing}")
    key: dict[str, str] = {}
    for i, row in table.iterrows():
        case, image = row["case_id"].strip(), row["image_id"].strip().removeprefix("'")
        if not case or not image:
            raise ImportFormatError(f"{where}: row {i + 1}: empty case_id or image_id")
        if key.get(case, image) != image:
            raise ImportFormatError(f"{where}: row {i + 1}: case {case!r} has two image ids")
        key[case] = image
    return key


def read_study_json(path: str | os.PathLike, name: str | None = None, key: dict[str, str] | None = None) -> dict:
    """Parse and check a JSON export; ImportFormatError naming the file (`name`, else the path)
    and the field at fault. Every case needs its image id: in the file (an export `with_key`,
    the Study admin's backup) or from `key` (`read_key` of the study's "key" export)."""
    path = Path(path)
    where = name or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_IMPORT_BYTES:
            raise ImportFormatError(f"{where}: not a valid study export: {size / 2**20:.0f} MiB; an import holds at most "
                                    f"{MAX_IMPORT_BYTES // 2**20} MiB")
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ImportFormatError(f"{where}: cannot read: {error}") from error
    except json.JSONDecodeError as error:
        raise ImportFormatError(f"{where}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from error
    except RecursionError as error:  # the decoder's own bound on nesting; no export nests more than a few levels
        raise ImportFormatError(f"{where}: not a valid study export: its JSON nests too deep to read") from error
    deepest = nesting_depth(document)
    if deepest > MAX_NESTING:
        raise ImportFormatError(f"{where}: not a valid study export: its JSON nests {deepest} levels deep; an export "
                                f"nests at most {MAX_NESTING}")
    if not isinstance(document, dict) or document.get("format") != JSON_FORMAT:
        raise ImportFormatError(f"{where}: field 'format' must be {JSON_FORMAT!r}: not a medattn study export")
    if document.get("format_version") != JSON_VERSION:
        raise ImportFormatError(f"{where}: field 'format_version' {document.get('format_version')!r} is not "
                                f"{JSON_VERSION}")
    provenance = document.get("provenance", {})
    if not isinstance(provenance, dict) or not all(isinstance(provenance.get(field, ""), str)
                                                   for field in ("study", "created_at", "exported_at")):
        raise ImportFormatError(f"{where}: field 'provenance': an object whose study, created_at and exported_at "
                                "are text expected")
    study = _need(document, "study", dict, where)
    _need(study, "name", str, f"{where}: study")
    if _need(study, "kind", str, f"{where}: study") not in KINDS:
        raise ImportFormatError(f"{where}: study.kind {study['kind']!r} is not one of {', '.join(KINDS)}")
    try:
        check_questions(_need(study, "questions", list, f"{where}: study"))
    except StudyError as error:
        raise ImportFormatError(f"{where}: study.{error}") from error
    case_ids = set()
    for i, case in enumerate(_need(document, "cases", list, where)):
        case_ids.add(_need(case, "case_id", str, f"{where}: cases[{i}]"))
        if "image_id" not in case and key is not None:
            if case["case_id"] not in key:
                raise ImportFormatError(f"{where}: cases[{i}]: {case['case_id']!r} is not in the case key")
            case["image_id"] = key[case["case_id"]]
        if "image_id" not in case:
            raise ImportFormatError(
                f"{where}: cases[{i}] has no image_id: the file was exported without its case key, so its cases "
                "cannot find their images; import the backup (Study admin's JSON, or export --with-key), or give "
                "the study's key file with it (--key)")
        _need(case, "image_id", str, f"{where}: cases[{i}]")
    codes = set()
    for i, panel in enumerate(_need(document, "panels", list, where)):
        for field in ("code", "checkpoint", "method"):
            _need(panel, field, str, f"{where}: panels[{i}]")
        codes.add(panel["code"])
    readers = set()
    for i, reader in enumerate(_need(document, "readers", list, where)):
        readers.add(_need(reader, "reader", str, f"{where}: readers[{i}]"))
        order = _need(reader, "case_order", list, f"{where}: readers[{i}]")
        if set(order) - case_ids:
            raise ImportFormatError(f"{where}: readers[{i}].case_order names unknown case(s) "
                                    f"{sorted(set(order) - case_ids)[:3]}")
    questions = {q["id"] for q in study["questions"]}
    for i, event in enumerate(_need(document, "events", list, where)):
        here = f"{where}: events[{i}]"
        if _need(event, "reader", str, here) not in readers:
            raise ImportFormatError(f"{here}.reader: {event['reader']!r} is not in 'readers'")
        if _need(event, "case_id", str, here) not in case_ids:
            raise ImportFormatError(f"{here}.case_id: {event['case_id']!r} is not in 'cases'")
        if _need(event, "question_id", str, here) not in questions:
            raise ImportFormatError(f"{here}.question_id: {event['question_id']!r} is not a question of the study")
        if "value" not in event:
            raise ImportFormatError(f"{here}: missing field 'value'")
        try:
            datetime.fromisoformat(_need(event, "submitted_at", str, here))
        except ValueError as error:
            raise ImportFormatError(f"{here}.submitted_at: not an ISO 8601 time: {event['submitted_at']!r}") from error
    return document


def import_study(store: AnnotationStore, path: str | os.PathLike, name: str | None = None,
                 key: str | os.PathLike | None = None, key_name: str | None = None) -> str:
    """Re-create the study of a JSON export in `store` under a new id; returns that id.
    Nothing is written unless the whole file checks out. `name`: what messages call the file
    (an upload's own name; default the path); `key`: the study's "key" export, for a JSON
    written without image ids (`key_name` names it in messages)."""
    document = read_study_json(path, name, read_key(key, key_name) if key is not None else None)
    spec = dict(document["study"])
    spec["cases"] = [c["image_id"] for c in document["cases"]]
    spec["case_meta"] = [c.get("meta") or {} for c in document["cases"]]
    provenance = document.get("provenance", {})
    spec["imported_from"] = provenance.get("study")
    return store.restore_study(spec, document["cases"], document["panels"], document["readers"], document["events"],
                               created_at=provenance.get("created_at"), exported_at=provenance.get("exported_at"))


def nesting_depth(document: Any) -> int:
    """How deep `document` (parsed JSON) nests lists and objects: 0 for a scalar. Iterative, so
    any depth the decoder produced is measured without recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
                         if isinstance(child, (dict, list)))
    return deepest
