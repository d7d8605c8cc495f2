"""COCO JSON files: reading (with validation), atomic writing, parse errors."""

import json
import tempfile
from pathlib import Path

import pytest
from data_samples import coco_sample, write_dataset
from hypothesis import given, settings
from hypothesis import strategies as st

from metaanchor.data import CocoDataset, validate_coco
from metaanchor.data.coco_json import load_coco_json, read_coco, write_coco
from metaanchor.errors import DataError


def test_write_coco_is_atomic_and_read_coco_validates(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text("old")
    write_coco(coco_sample(), path)
    assert json.loads(path.read_text())["images"][0]["id"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["ann.json"]
    assert len(read_coco(path)["annotations"]) == 4
    bad = coco_sample()
    bad["annotations"][2]["image_id"] = 99
    write_coco(bad, path)
    with pytest.raises(DataError, match=r"ann\.json: annotation id 3 \(image 99\)"):
        read_coco(path)


def test_malformed_json_names_file_line_and_column(tmp_path):
    folder = tmp_path / "ds"
    write_dataset(folder, {})
    (folder / "annotations.json").write_text('{"images": [\n  {"id": 1,,}\n]}')
    with pytest.raises(DataError, match=r"annotations\.json: malformed JSON at line 2 column 12"):
        CocoDataset(folder)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=60) | st.text(max_size=60).map(str.encode))
def test_fuzzed_annotation_file_bytes_raise_only_data_error(raw):
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "annotations.json"
        f.write_bytes(raw)
        try:
            validate_coco(load_coco_json(f), f)
        except DataError as e:
            assert str(f) in str(e)
