"""``metaanchor data synth|convert``."""

from __future__ import annotations

from metaanchor.cli.common import Parser
from metaanchor.cli.data_show import add_show


def add(sub):
    p = sub.add_parser("data", help="synthetic data and format conversion")
    dsub = p.add_subparsers(dest="data_cmd", required=True, parser_class=Parser)
    s = dsub.add_parser("synth", help="write a synthetic 'shapes' dataset (COCO layout)",
                        description="Write DIR/annotations.json + DIR/images/ of coloured shapes whose box "
                                    "distribution is controlled by --distribution (a preset name or KEY=VALUE "
                                    "fields: image_size, num_classes, min_size, max_size, min_ratio, max_ratio, "
                                    "min_objects, max_objects, seed).")
    s.add_argument("--out", required=True, help="dataset folder to write (DIR/annotations.json + DIR/images/)")
    s.add_argument("--images", type=int, default=500, help="number of images")
    s.add_argument("--distribution", nargs="+", default=["default"], metavar="NAME|KEY=VALUE",
                   help="box distribution: a preset name, then KEY=VALUE fields changing it")
    s.add_argument("--seed", type=int, help="random seed (overrides the distribution's)")
    s.set_defaults(func=cmd_synth)
    c = dsub.add_parser("convert", help="convert between coco, voc and yolo formats",
                        description="Write a self-contained dataset folder (images hard-linked, else copied) in "
                                    "another format. One split at a time: a source with several (VOC ImageSets, "
                                    "data.yaml entries, images/train + images/val) needs --split. Training, eval "
                                    "and anchors read COCO, VOC and data.yaml datasets in place, without converting.")
    c.add_argument("--src", required=True, help="source: COCO folder/JSON; VOC root or annotation folder; YOLO "
                                                "data.yaml, a folder with one, or a folder with images/ + labels/")
    c.add_argument("--src-format", required=True, choices=["coco", "voc", "yolo"], help="format of --src")
    c.add_argument("--dst", required=True, help="destination folder")
    c.add_argument("--dst-format", required=True, choices=["coco", "voc", "yolo"],
                   help="format to write (yolo also writes DST/data.yaml)")
    c.add_argument("--images", help="image folder of the source, when not beside it")
    c.add_argument("--split", metavar="NAME",
                   help="convert only one split: VOC ImageSets/Main/NAME.txt, a data.yaml entry (train, val, test) "
                        "or a YOLO folder's images/NAME + labels/NAME")
    c.add_argument("--names", metavar="A,B,C|FILE",
                   help="YOLO sources without data.yaml or classes.txt: the class names in class-id order, "
                        "comma-separated or a file with one per line")
    c.add_argument("--skip-invalid", action="store_true",
                   help="drop (and count) bad records, e.g. images whose file_name leaves the images folder")
    c.add_argument("--fail-fast", action="store_true",
                   help="make every skipped record, and one image file under two image ids, an error")
    c.set_defaults(func=cmd_convert)
    add_show(dsub)


def cmd_synth(args) -> int:
    from metaanchor.data.synth import check_num_images, synth_config, write_synth_dataset
    from metaanchor.files import check_outputs

    check_outputs({"--out": args.out}, {}, folders=["--out"])
    extra = {"seed": args.seed} if args.seed is not None else {}
    cfg = synth_config(args.distribution, **extra)
    check_num_images(args.images, "--images")
    path = write_synth_dataset(args.out, args.images, cfg)
    print(f"wrote {args.images} images to {path}")
    return 0


def _names(text: str | None) -> list[str] | None:
    """``--names``: a file with one name a line, else comma-separated names."""
    from pathlib import Path

    from metaanchor.data.class_names import read_class_names
    from metaanchor.errors import UserError

    if text is None:
        return None
    if Path(text).is_file():
        return read_class_names(Path(text))
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise UserError(f"--names {text}: an empty name; give A,B,C (class-id order) or a file with one name a line")
    return names


def cmd_convert(args) -> int:
    from metaanchor.data.convert import convert
    from metaanchor.files import check_outputs

    check_outputs({"--dst": args.dst}, {"--src": args.src, "--images": args.images}, folders=["--dst"])
    skipped: dict[str, int] = {}
    dst = convert(args.src, args.src_format, args.dst, args.dst_format, images_dir=args.images, split=args.split,
                  skip_invalid=args.skip_invalid, fail_fast=args.fail_fast, skipped=skipped,
                  class_names=_names(args.names))
    split = f" split {args.split}" if args.split else ""
    print(f"converted {args.src}{split} ({args.src_format}) -> {dst} ({args.dst_format})")
    n_img = skipped.pop("unsafe_file_name", 0)
    if n_img:
        print(f"skipped {n_img} image(s) (unsafe_file_name: {n_img})")
    if skipped:
        print(f"skipped or repaired {sum(skipped.values())} annotation(s) ("
              + ", ".join(f"{k}: {v}" for k, v in skipped.items()) + ")")
    return 0
