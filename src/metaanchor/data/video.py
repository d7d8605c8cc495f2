"""Video files as frames (PyAV, imported on first use): read [3, H, W] tensors, write RGB frames.

PyAV is the optional extra ``metaanchor[video]``; without it, reading or writing a video is a one-line
``UserError`` saying how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metaanchor.errors import DataError, UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
CODECS = ("h264", "mpeg4")  # the first the installed FFmpeg can encode; PyAV's wheels ship libx264 (h264)
DEFAULT_FPS = 30


def _av():
    try:
        import av
    except ImportError:
        raise UserError("video needs PyAV, which is not installed: pip install metaanchor[video]") from None
    return av


def is_video(path: str | Path) -> bool:
    """True for a file name with a video suffix (.mp4 .avi .mov .mkv .webm)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _open(path: str | Path):
    av = _av()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as e:
        raise DataError(f"video {path}: cannot be opened: {e}") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"video {path}: has no video stream")
    return container


def video_fps(path: str | Path) -> Fraction:
    """Frame rate of the first video stream (``DEFAULT_FPS`` when the file does not say)."""
    with _open(path) as container:
        rate = container.streams.video[0].average_rate
    return Fraction(rate) if rate else Fraction(DEFAULT_FPS)


def read_frames(path: str | Path) -> Iterator[Tensor]:
    """The frames of a video's first stream, in order, as [3, H, W] float32 RGB in [0, 1]."""
    av = _av()
    with _open(path) as container:
        try:
            for frame in container.decode(video=0):
                rgb = frame.to_ndarray(format="rgb24")  # [H, W, 3] uint8
                yield torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        except av.FFmpegError as e:
            raise DataError(f"video {path}: cannot be decoded: {e}") from None


def encoder() -> str:
    """The first codec of ``CODECS`` the installed PyAV can encode."""
    av = _av()
    for name in CODECS:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    raise UserError(f"PyAV can encode none of {', '.join(CODECS)}; reinstall it: pip install metaanchor[video]")


class VideoWriter:
    """Writes [H, W, 3] uint8 RGB frames as an MP4 at ``fps``; the file appears only when closed cleanly.

    Frames go to a hidden temp file beside ``path``, renamed over it on ``close`` (so an interrupted
    run leaves no half video). The frame size is the first frame's, rounded up to even sides (4:2:0
    chroma needs them) by padding black at the bottom and right.
    """

    def __init__(self, path: str | Path, fps: Fraction | float = DEFAULT_FPS):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.fps = Fraction(fps).limit_denominator(1001) if fps else Fraction(DEFAULT_FPS)
        self.codec = encoder()
        self.container = self.stream = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame [H, W, 3] uint8 RGB."""
        av = _av()
        if self.container is None:
            self.container = av.open(str(self.tmp), "w", format="mp4")
            fast = {"preset": "veryfast"} if self.codec == "h264" else {}  # ~3x faster than x264's default
            self.stream = self.container.add_stream(self.codec, rate=self.fps, options=fast)
            self.stream.height, self.stream.width = (s + s % 2 for s in rgb.shape[:2])
            self.stream.pix_fmt = "yuv420p"
        h, w = self.stream.height, self.stream.width
        if rgb.shape[:2] != (h, w):
            padded = np.zeros((h, w, 3), np.uint8)
            padded[: min(h, rgb.shape[0]), : min(w, rgb.shape[1])] = rgb[:h, :w]
            rgb = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self) -> Path | None:
        """Flush and move the file into place; returns its path (None: no frame was written)."""
        if self.container is None:
            return None
        self.container.mux(self.stream.encode())
        self.container.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop what was written (the temp file)."""
        if self.container is not None:
            self.container.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
