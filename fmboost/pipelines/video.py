"""Upscaling a clip: windows of frames through the pipeline, out to a video or to a folder of PNG frames.

Memory is bounded by a window: `window` frames are written per model call, each seeing `context` frames of the
neighbouring windows on either side (the temporal layers' reach; per frame there is no context). Outputs:

- a video (H.264 by default, data/video.VideoWriter): encoded while frames come, into a temporary file renamed at
  the end; an interrupted run leaves nothing. With `resume`, finished frames are kept instead as lossless PNGs in
  a work folder beside the output (.NAME.frames/), which a rerun skips, and are encoded once all are done: a long
  clip is never lost to an interruption, at the cost of the frames' disk space while it runs.
- a folder of frames, DIR/000001.png…: written into a temporary folder renamed at the end; with `resume`, straight
  into DIR, whose finished frames a rerun skips (each frame is itself written atomically).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fmboost.data.files import normal_modes, remove
from fmboost.data.images import save_image_atomic
from fmboost.data.video import VideoInfo, VideoWriter, frame_name, read_frames, windows
from fmboost.errors import InputError

WINDOW = 8   # frames written per model call
CONTEXT = 2  # frames of the neighbouring windows seen on either side, in aligned mode


@dataclass(frozen=True)
class VideoPlan:
    info: VideoInfo
    output: Path
    frames_dir: bool          # DIR/000001.png… instead of a video
    target: tuple[int, int]
    passes: int               # model runs per frame (then a Lanczos resize to `target`)
    resume: bool = False
    crf: int = 18
    window: int = WINDOW
    context: int = CONTEXT


def window_for(w: int, h: int, max_pixels: int, context: int) -> int:
    """Frames per model call such that a call holds about as much as 4 images at the pixel limit (≥ 1)."""
    return max(1, min(WINDOW, 4 * max_pixels // max(1, w * h) - 2 * context))


def work_folder(plan: VideoPlan) -> Path:
    """Where finished frames are written before the output is complete."""
    if plan.frames_dir:
        return plan.output if plan.resume else plan.output.with_name(f".{plan.output.name}.{os.getpid()}.tmp")
    return plan.output.with_name(f".{plan.output.name}.frames")


def finished(folder: Path, count: int, target: tuple[int, int]) -> set[int]:
    """Indices of the frames already in `folder` (written atomically, so whole); refuses frames of another size,
    left by a run with other settings."""
    done = {i for i in range(count) if (folder / frame_name(i)).is_file()}
    if done:
        with Image.open(folder / frame_name(min(done))) as im:
            if im.size != target:
                raise InputError(f"{folder} holds frames of {im.width}×{im.height}, not {target[0]}×{target[1]}: "
                                 f"from a run with other settings; remove it, or choose another -o")
    return done


def to_frames(x) -> list[np.ndarray]:
    """F×3×H×W in [-1, 1] → H×W×3 uint8 frames."""
    a = ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte()
    return list(a.permute(0, 2, 3, 1).numpy())


def pixel_run(scale: int, method: str = "bicubic"):
    """`run` for a pixel-space baseline: each frame resized by PIL, as `--method bicubic` resizes an image."""
    import torch

    from fmboost.data.images import resize_by

    def run(x):
        frames = [np.asarray(resize_by(Image.fromarray(f), scale, method)) for f in to_frames(x)]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return run


def upscale_window(frames: list[np.ndarray], run, plan: VideoPlan) -> list[np.ndarray]:
    """`run` (F×3×h×w → F×3×(h·s)×(w·s), [-1, 1]) `passes` times, then a Lanczos resize of each frame to the
    target, as images are (pipelines/scaling.upscale_to)."""
    import torch

    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    for _ in range(plan.passes):
        x = run(x)
    out = to_frames(x)
    if (out[0].shape[1], out[0].shape[0]) != plan.target:
        out = [np.asarray(Image.fromarray(f).resize(plan.target, Image.LANCZOS)) for f in out]
    return out


def upscaled(frames, run, plan: VideoPlan):
    """(index, pts, upscaled frame) for each (index, pts, frame) of `frames`, a window at a time."""
    for items, a, b in windows(frames, plan.window, plan.context):
        out = upscale_window([f for _, _, f in items], run, plan)
        for (i, pts, _), frame in zip(items[a:b], out[a:b]):
            yield i, pts, frame


def upscale_video(plan: VideoPlan, run, progress=None) -> Path:
    """Upscales plan.info's clip with `run` (see upscale_window) to plan.output; `progress(n)` after each n frames
    written or skipped. Returns the output."""
    progress = progress or (lambda n: None)
    if plan.frames_dir or plan.resume:
        return through_frames(plan, run, progress)
    with VideoWriter(plan.output, plan.info, *plan.target, plan.crf) as writer:
        for _, pts, frame in upscaled(read_frames(plan.info.path), run, plan):
            writer.write(pts, frame)
            progress(1)
        return writer.finish()


def through_frames(plan: VideoPlan, run, progress) -> Path:
    """The frames as PNGs in the work folder (skipping those finished), then renamed (--format png) or encoded."""
    folder = work_folder(plan)
    if plan.frames_dir and not plan.resume:
        remove(folder)
    if not plan.frames_dir:  # a container that refuses the codec fails now, not after the last frame
        VideoWriter(plan.output, plan.info, *plan.target, plan.crf).abort()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        done, stamps = finished(folder, plan.info.frames, plan.target), []
        for items, a, b in windows(read_frames(plan.info.path), plan.window, plan.context):
            stamps += [pts for _, pts, _ in items[a:b]]
            todo = [i for i, _, _ in items[a:b] if i not in done]
            if todo:
                out = upscale_window([f for _, _, f in items], run, plan)[a:b]
                for (i, _, _), frame in zip(items[a:b], out):
                    if i not in done:
                        save_image_atomic(Image.fromarray(frame), folder / frame_name(i))
            progress(b - a)
    except BaseException:
        if plan.frames_dir and not plan.resume:
            remove(folder)  # nothing partial under any name; with resume the finished frames are the point
        raise
    if plan.frames_dir:
        if folder != plan.output:
            normal_modes(folder)
            remove(plan.output)  # --overwrite was checked by the caller
            os.replace(folder, plan.output)
        return plan.output
    with VideoWriter(plan.output, plan.info, *plan.target, plan.crf) as writer:
        for i, pts in enumerate(stamps):
            with Image.open(folder / frame_name(i)) as im:
                writer.write(pts, np.asarray(im.convert("RGB")))
        writer.finish()
    remove(folder)
    return plan.output
