"""Every code block of README.md and docs/ runs, on tiny inputs; the generated references are current."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from docs_blocks import RUN, blocks, run_block, with_overrides

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [b for path in DOCS for b in blocks(path) if b.lang in RUN]
BCCD = ROOT.parent / "shared" / "data" / "bccd"


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    """A folder holding what the docs refer to, small:

    data/shapes/{train,val}  synthetic COCO folders      data/bccd  a 12-image VOC root (splits train, val, test)
    runs/demo/last.pt        a tiny checkpoint (3 shape classes), runs/demo/data/val as make demo writes it
    a.png, b.png, img.jpg    images
    """
    from conftest import tiny_detector

    from metaanchor.data.synth import synth_config, write_synth_dataset

    root = tmp_path_factory.mktemp("docs")
    train = write_synth_dataset(root / "data/shapes/train", 16, synth_config("default", seed=0), progress=False)
    val = write_synth_dataset(root / "data/shapes/val", 8, synth_config("default", seed=1), progress=False)
    shutil.copytree(val, root / "runs/demo/data/val")  # where make demo writes its validation images
    names = ["circle", "square", "triangle"]
    (root / "runs/demo").mkdir(parents=True, exist_ok=True)
    tiny_detector(class_names=names).save(root / "runs/demo/last.pt")
    images = sorted((train / "images").iterdir())
    for name, src in zip(("a.png", "b.png"), images):
        shutil.copy(src, root / name)
    voc = root / "data/bccd"
    (voc / "ImageSets/Main").mkdir(parents=True)
    ids = (BCCD / "ImageSets/Main/train.txt").read_text().split()[:12]
    for sub in ("Annotations", "JPEGImages"):
        (voc / sub).mkdir()
    for i in ids:
        shutil.copy(BCCD / "Annotations" / f"{i}.xml", voc / "Annotations")
        shutil.copy(BCCD / "JPEGImages" / f"{i}.jpg", voc / "JPEGImages")
    for split, part in (("train", ids[:6]), ("val", ids[6:9]), ("test", ids[9:])):
        (voc / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(part) + "\n")
    shutil.copy(voc / "JPEGImages" / f"{ids[0]}.jpg", root / "img.jpg")
    return root


def test_there_are_blocks_to_run():
    assert len([b for b in BLOCKS if not b.skipped]) >= 10


@pytest.fixture(scope="session")
def pages(sandbox, tmp_path_factory):
    """Per page: [its work folder, how many of its blocks have run]; a page's blocks share the folder."""
    return {path: [tmp_path_factory.mktemp("page"), 0] for path in DOCS}


def check(block, work):
    result = run_block(block, work)
    assert result.returncode == 0, f"{block.name} failed:\n{block.code}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_code_block_runs(block, sandbox, pages):
    if block.skipped:
        pytest.skip(block.skipped)
    page = pages[block.file]
    work = page[0] / "work"
    if not work.exists():
        shutil.copytree(sandbox, work, symlinks=True)
    before = [b for b in BLOCKS if b.file == block.file and not b.skipped]
    for earlier in before[page[1]:before.index(block)]:  # a block may use what the blocks above it wrote
        check(earlier, work)
    check(block, work)
    page[1] = before.index(block) + 1


def test_a_broken_block_fails_with_its_file_and_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# t\n\n```bash\nmetaanchor eval --checkpoint missing.pt --data nowhere\n```\n\n"
                    "<!-- docs-test: skip (needs a GPU) -->\n```python\nimport torch; torch.zeros(1).cuda()\n```\n")
    broken, skipped = blocks(page)
    assert (broken.name, broken.lang, broken.skipped) == ("page.md:3", "bash", None)
    assert skipped.skipped == "needs a GPU"
    result = run_block(broken, tmp_path)
    assert result.returncode == 2 and "missing.pt" in result.stderr


def test_training_lines_get_the_tiny_budget_appended():
    code = "metaanchor train --config bccd \\\n    --out runs/x data=data/bccd   # comment\nls runs\n"
    assert with_overrides(code, "solver.max_iter=2") == (
        "metaanchor train --config bccd      --out runs/x data=data/bccd solver.max_iter=2  # comment\nls runs\n")


def test_cli_and_config_references_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "reference.py"), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
