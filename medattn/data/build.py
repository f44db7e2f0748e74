"""Command line: build a dataset folder from a public dataset's official files.

    python -m medattn.data.build KIND --source DIR --out DIR [--seed N] [--val-frac F --test-frac F | --split S] [options]

KIND is one of nih, rsna, cbis-ddsm, sipakmed, mimic-cxr, coco; `python -m medattn.data.build
KIND --help` lists its options. Images are not copied: the folder's image_root points at the
source. data_manifests/README.md says where to get each dataset. `--split test` (or
`--test-frac 1`) puts the whole folder in test: evaluating a model trained elsewhere on every image.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from medattn.data.builders.cbis_ddsm import ABNORMALITIES, build_cbis_ddsm
from medattn.data.builders.coco import build_coco
from medattn.data.builders.mimic_cxr import UNCERTAIN_POLICIES, build_mimic_cxr
from medattn.data.builders.nih import build_nih
from medattn.data.builders.rsna import build_rsna
from medattn.data.builders.sipakmed import build_sipakmed
from medattn.data.builders.splits import SPLIT_RANK, check_fractions
from medattn.errors import MedattnError

BUILDERS: dict[str, Callable[..., object]] = {
    "nih": build_nih,
    "rsna": build_rsna,
    "cbis-ddsm": build_cbis_ddsm,
    "sipakmed": build_sipakmed,
    "mimic-cxr": build_mimic_cxr,
    "coco": build_coco,
}
HELP = {
    "nih": "NIH ChestX-ray14 (Data_Entry_2017.csv, BBox_List_2017.csv, images/)",
    "rsna": "RSNA Pneumonia Detection Challenge (stage_2_train_labels.csv, images/)",
    "cbis-ddsm": "CBIS-DDSM mammograms (*_case_description_*_set.csv, DICOM tree)",
    "sipakmed": "SIPaKMeD Pap smear cells (im_<Class>/ folders)",
    "mimic-cxr": "MIMIC-CXR-JPG (mimic-cxr-2.0.0-chexpert.csv, -metadata.csv, files/)",
    "coco": "any COCO detection json, e.g. TBX11K",
}


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--source", required=True, help="folder with the official files")
    common.add_argument("--out", required=True, help="dataset folder to write")
    common.add_argument("--seed", type=int, default=0, help="seed of the patient split (default 0)")
    common.add_argument("--val-frac", type=float, default=0.1, help="fraction of patients for val (default 0.1)")
    common.add_argument("--test-frac", type=float, default=0.2,
                        help="fraction of patients for test when no official split (default 0.2; 1: all of them)")
    common.add_argument("--split", choices=list(SPLIT_RANK),
                        help="put every image in this split, ignoring fractions and official lists (test: evaluate "
                             "a model trained elsewhere on the whole folder)")
    common.add_argument("--name", help="dataset name (default: the kind's usual name)")
    common.add_argument("--strict", action="store_true",
                        help="fail on the first bad image or case instead of skipping it (skipped ones are "
                             "named in the log and in dataset.json under 'skipped')")

    root = argparse.ArgumentParser(prog="python -m medattn.data.build", description=__doc__.split("\n\n")[0])
    kinds = root.add_subparsers(dest="kind", required=True, metavar="KIND")
    sub = {kind: kinds.add_parser(kind, parents=[common], help=HELP[kind], description=HELP[kind]) for kind in BUILDERS}

    sub["nih"].add_argument("--drop-no-finding", action="store_true", help="drop images with no finding (Saednia et al.)")
    sub["nih"].add_argument("--exclude-hernia", action="store_true", help="remove the Hernia class")
    sub["rsna"].add_argument(
        "--drop-not-normal", action="store_true",
        help="drop 'No Lung Opacity / Not Normal' patients (needs stage_2_detailed_class_info.csv; Aggarwal et al.)",
    )  # fmt: skip
    sub["cbis-ddsm"].add_argument("--abnormality", choices=sorted(ABNORMALITIES), default="both")
    sub["sipakmed"].add_argument("--cropped", action="store_true", help="single-cell CROPPED images instead of cluster images with cell boxes")
    mimic = sub["mimic-cxr"]
    mimic.add_argument("--classes", type=_comma_list, default=["Pleural Effusion"], help='comma-separated CheXpert labels (default "Pleural Effusion")')
    mimic.add_argument("--uncertain", choices=UNCERTAIN_POLICIES, default="zero", help="-1 labels become 0, 1, or drop the image (default zero)")
    mimic.add_argument("--views", type=_comma_list, default=["PA", "AP"], help='comma-separated ViewPosition values, or "all" (default "PA,AP")')
    sub["coco"].add_argument(
        "--annotations", action="append", required=True,
        help="COCO json; repeatable; prefix with train=/val=/test= to fix that file's split",
    )  # fmt: skip
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kind, source, out = args.pop("kind"), args.pop("source"), args.pop("out")
    if args.get("name") is None:
        args.pop("name")
    if kind == "mimic-cxr" and [v.lower() for v in args["views"]] == ["all"]:
        args["views"] = None
    try:
        check_fractions(args["val_frac"], args["test_frac"], args["split"])  # before minutes of header reads
        BUILDERS[kind](source, out, **args)
    except (MedattnError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
