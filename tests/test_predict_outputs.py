"""`metaanchor predict` outputs beyond the drawings: YOLO text labels, --no-draw, video in and out."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_user_error, cli

from metaanchor.data.io import load_image
from metaanchor.families import load_detector


def predict(capsys, ckpt, out, *args):
    return cli(capsys, "predict", "--checkpoint", ckpt, "--device", "cpu", "--score-thresh", 0.0, "--out", out, *args)


def test_save_txt_is_the_detections_normalised(capsys, tmp_path, odd_ckpt, odd_ids_dataset):
    imgs = sorted((odd_ids_dataset / "images").iterdir())[:2]
    out = tmp_path / "pred"
    code, _, err = predict(capsys, odd_ckpt, out, "--save-txt", *imgs)
    assert code == 0, err
    model = load_detector(odd_ckpt)
    for img in imgs:
        image = load_image(img)
        h, w = image.shape[-2:]
        det = model.predict([image], score_thresh=0.0)[0]
        rows = np.loadtxt(out / "labels" / f"{img.stem}.txt", ndmin=2)  # class cx cy w h score
        assert len(rows) == len(det["boxes"]) > 0
        x1, y1, x2, y2 = det["boxes"].double().unbind(1)
        expected = torch.stack([det["labels"].double(), (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w,
                                (y2 - y1) / h, det["scores"].double()], 1).numpy()
        np.testing.assert_allclose(rows, expected, atol=1e-6, rtol=0)
        # back to pixels: the boxes of detections.json (rounded there to 0.01 px)
        recs = [d for d in json.loads((out / "detections.json").read_text()) if d["file_name"] == str(img)]
        back = np.stack([(rows[:, 1] - rows[:, 3] / 2) * w, (rows[:, 2] - rows[:, 4] / 2) * h,
                         rows[:, 3] * w, rows[:, 4] * h], 1)
        np.testing.assert_allclose(back, [r["bbox"] for r in recs], atol=0.006)
    assert (out / f"{imgs[0].stem}_det.png").is_file()


def test_no_draw_writes_no_picture(capsys, tmp_path, odd_ckpt, odd_ids_dataset):
    img = sorted((odd_ids_dataset / "images").iterdir())[0]
    out = tmp_path / "pred"
    code, _, err = predict(capsys, odd_ckpt, out, "--no-draw", "--save-txt", img)
    assert code == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["detections.json", f"labels/{img.stem}.txt"]


def _video(path, frames=3, size=(48, 64), fps=5):
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.height, s.width = size
        s.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(frames):
            rgb = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
            c.mux(s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        c.mux(s.encode())
    return path


def test_video_goes_through_predict(capsys, tmp_path, odd_ckpt):
    av = pytest.importorskip("av")
    video = _video(tmp_path / "clip.mp4")
    out = tmp_path / "pred"
    code, stdout, err = predict(capsys, odd_ckpt, out, "--save-frames", "--save-txt", video)
    assert code == 0, err
    with av.open(str(out / "clip_det.mp4")) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert float(stream.average_rate) == 5
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    dets = json.loads((out / "detections.json").read_text())
    assert {d["frame"] for d in dets} == {0, 1, 2}
    assert {(d["frame"], d["image_id"]) for d in dets} == {(0, 1), (1, 2), (2, 3)}
    assert all(d["file_name"] == str(video) for d in dets)
    assert sorted(p.name for p in (out / "clip_det").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["clip_0.txt", "clip_1.txt", "clip_2.txt"]
    assert "and 3 frames of 1 videos" in stdout


def test_video_after_images_numbers_frames_after_them(capsys, tmp_path, odd_ckpt, odd_ids_dataset):
    pytest.importorskip("av")
    img = sorted((odd_ids_dataset / "images").iterdir())[0]
    video = _video(tmp_path / "clip.mp4", frames=2)
    out = tmp_path / "pred"
    code, _, err = predict(capsys, odd_ckpt, out, "--no-draw", video, img)
    assert code == 0, err
    dets = json.loads((out / "detections.json").read_text())
    assert {(d.get("frame"), d["image_id"]) for d in dets} == {(None, 1), (0, 2), (1, 3)}
    assert not (out / "clip_det.mp4").exists()


def test_video_without_pyav_is_one_line(capsys, tmp_path, odd_ckpt, monkeypatch):
    import sys

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0")
    monkeypatch.setitem(sys.modules, "av", None)  # import av raises ImportError
    assert_user_error(capsys, ["predict", "--checkpoint", odd_ckpt, "--out", tmp_path / "o", video],
                      "pip install metaanchor[video]")


def test_unreadable_video_is_skipped_or_named(capsys, tmp_path, odd_ckpt, odd_ids_dataset):
    pytest.importorskip("av")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    img = sorted((odd_ids_dataset / "images").iterdir())[0]
    code, stdout, err = predict(capsys, odd_ckpt, tmp_path / "o", "--no-draw", bad, img)
    assert code == 0 and any(line.startswith(f"skipped: video {bad}") for line in err), err
    assert "1 unreadable videos skipped" in stdout
    assert_user_error(capsys, ["predict", "--checkpoint", odd_ckpt, "--out", tmp_path / "o2", "--fail-fast", bad],
                      f"video {bad}")


def test_video_writer_pads_odd_sizes_and_leaves_nothing_when_interrupted(tmp_path):
    pytest.importorskip("av")
    from metaanchor.data.video import VideoWriter, read_frames, video_fps

    with VideoWriter(tmp_path / "odd.mp4", 12) as w:
        for v in (0, 128, 255):
            w.write(np.full((45, 63, 3), v, np.uint8))
    frames = list(read_frames(tmp_path / "odd.mp4"))
    assert [tuple(f.shape) for f in frames] == [(3, 46, 64)] * 3  # 4:2:0 needs even sides: padded
    assert video_fps(tmp_path / "odd.mp4") == 12
    assert [round(float(f[:, :45, :63].mean()) * 255) for f in frames] == pytest.approx([0, 128, 255], abs=3)
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "cut.mp4") as w:
        w.write(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mp4"]
