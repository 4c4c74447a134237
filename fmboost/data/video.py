"""Video files through PyAV (its wheels bring FFmpeg): what a clip holds, its frames in order, and writing the
upscaled frames with the input's timing and audio.

A clip is read twice at most and never held whole: `probe` demuxes its packets without decoding them (frame count,
frame rate, variable frame rate), `read_frames` decodes frame after frame. `VideoWriter` encodes frames as they come
(H.264 by default) with each input frame's own pts in the input's time base, and copies the audio packets unchanged,
interleaved by time, from a second demuxer of the input; it writes a temporary file that `finish` renames into place,
so an interrupted run leaves nothing under the output's name.

No torch here: frames are H×W×3 uint8 numpy arrays.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from fmboost.data.files import normal_modes, remove
from fmboost.errors import InputError

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".gif", ".m4v", ".avi"}
# Output containers and the video codec written into each (H.264 wherever the container takes it).
CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9",
          ".gif": "gif"}
EVEN_SIZE_CODECS = {"libx264", "libvpx-vp9"}  # yuv420p: chroma at half size both ways
DEFAULT_CRF = 18  # visually lossless for x264; the upscale should not be lost to the encoder
# Frame durations within this share of the median count as one rate (containers round pts to their time base).
VFR_TOLERANCE = 0.02


class VideoError(InputError):
    """A clip that cannot be used; the message is meant for the user as it is."""


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    frames: int
    fps: Fraction          # the average rate (frames / duration), what the encoder is told
    time_base: Fraction
    audio: int             # audio streams, copied unchanged
    codec: str


def _open(path: Path):
    import av

    try:
        return av.open(str(path))
    except av.error.EOFError:  # a container that ends before its first packet
        raise VideoError(f"{path}: the clip has no frames (or is cut short before them)") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoError(f"{path}: not a readable video ({type(e).__name__})") from None


def probe(path: str | os.PathLike) -> VideoInfo:
    """The clip's frame count, rate, time base, size and audio streams, from its packets (not decoded), and one
    frame decoded to know it can be. Refuses: no video stream, no frames, a variable frame rate."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream, so no frames to upscale")
        stream = container.streams.video[0]
        try:
            pts = [p.pts for p in container.demux(stream) if p.size and p.pts is not None]
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: damaged video ({type(e).__name__})") from None
        if not pts:
            raise VideoError(f"{path}: the clip has no frames")
        check_constant_rate(path, sorted(pts))
        container.seek(0)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: its frames cannot be decoded ({type(e).__name__})") from None
        if first is None:
            raise VideoError(f"{path}: its frames cannot be decoded")
        tb = stream.time_base or Fraction(1, 1)
        fps = average_rate(sorted(pts), tb, stream)
        return VideoInfo(path, first.width, first.height, len(pts), fps, tb, len(container.streams.audio),
                         stream.codec_context.name)


def check_constant_rate(path: Path, pts: list[int]) -> None:
    """Refuses a variable frame rate (phone clips, screen recordings): its frames' timing could not be kept by
    encoding at one rate. One frame, or two, have a rate by definition."""
    deltas = np.diff(pts)
    if len(deltas) < 2:
        return
    median = float(np.median(deltas))
    if median <= 0 or np.abs(deltas[:-1] - median).max() > VFR_TOLERANCE * median + 1:
        raise VideoError(f"{path}: variable frame rate (frame durations from {deltas.min()} to {deltas.max()} "
                         f"time-base units); convert it to a constant rate first, e.g. ffmpeg -i IN -fps_mode cfr OUT")


def average_rate(pts: list[int], tb: Fraction, stream) -> Fraction:
    if len(pts) > 1:
        step = Fraction(int(round(np.median(np.diff(pts))))) * tb
        if step > 0:
            return (1 / step).limit_denominator(1001 * 1000)
    return Fraction(stream.average_rate or stream.guessed_rate or 25)


def read_frames(path: str | os.PathLike):
    """(index, pts, H×W×3 uint8 RGB) for every frame, in presentation order."""
    import av

    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        i = -1
        try:
            for i, frame in enumerate(container.decode(stream)):
                yield i, frame.pts, frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: damaged video at frame {i + 2} ({type(e).__name__})") from None


def windows(frames, size: int, context: int):
    """Groups (index, pts, frame) items into windows of `size` frames to write, with up to `context` frames of the
    neighbouring windows on either side to see: yields (items, first, last), items[first:last] being those to write.
    At most size + 2·context frames are held."""
    held, start = [], 0  # held[start:] are not yet written
    for item in frames:
        held.append(item)
        if len(held) - start == size + context:
            yield held, start, start + size
            keep = max(0, start + size - context)
            held, start = held[keep:], start + size - keep
    if len(held) > start:
        yield held, start, len(held)


def codec_for(path: Path) -> str:
    return CODECS.get(path.suffix.lower(), "libx264")


def check_output_size(path: Path, width: int, height: int) -> None:
    if codec_for(path) in EVEN_SIZE_CODECS and (width % 2 or height % 2):
        raise VideoError(f"the output would be {width}×{height}, but {path.suffix} video (yuv420p) needs an even "
                         f"width and height: choose --size with even sides, or --format png for frames")


class VideoWriter:
    """Encodes frames into `out` with `info`'s time base and each frame's pts, the input's audio copied
    unchanged. Use as a context manager: leaving it with an exception removes the temporary file; `finish()`
    flushes, closes and renames it into place."""

    def __init__(self, out: Path, info: VideoInfo, width: int, height: int, crf: int = DEFAULT_CRF):
        import av

        self.out, self.info = Path(out), info
        self.audio_in, self.pending = None, None  # the input's audio packets, and the next one not yet muxed
        self.tmp = self.out.with_name(f".{self.out.stem}.{os.getpid()}.tmp{self.out.suffix}")
        remove(self.tmp)
        self.container = av.open(str(self.tmp), "w")
        try:
            self.video = self.add_video(codec_for(self.out), width, height, crf)
            self.audio_in, self.audio = self.add_audio()
            self.container.start_encoding()  # a codec the container refuses fails here, before any model work
        except (av.error.FFmpegError, ValueError) as e:
            self.abort()
            raise VideoError(f"{self.out}: cannot write this video there ({e}); try -o NAME.mkv, which takes "
                             f"every codec") from None

    def add_video(self, codec: str, width: int, height: int, crf: int):
        stream = self.container.add_stream(codec, rate=self.info.fps)
        stream.width, stream.height = width, height
        stream.time_base = self.info.time_base
        stream.codec_context.time_base = self.info.time_base
        if codec == "gif":
            stream.pix_fmt = "rgb8"
        else:
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf)} if codec == "libx264" else {"crf": str(crf), "b": "0"}
        return stream

    def add_audio(self):
        """A second demuxer of the input, for its audio packets, and their output streams (none for a gif)."""
        if not self.info.audio or self.out.suffix.lower() == ".gif":
            return None, []
        source = _open(self.info.path)
        streams = {s.index: self.container.add_stream_from_template(s) for s in source.streams.audio}
        packets = source.demux(source.streams.audio)
        return (source, packets), streams

    def write(self, pts: int, frame: np.ndarray) -> None:
        import av

        video = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video.pts, video.time_base = pts, self.info.time_base
        for packet in self.video.encode(video):
            self.container.mux(packet)
        self.copy_audio(pts * self.info.time_base)

    def copy_audio(self, until: Fraction | None) -> None:
        """Muxes the input's audio packets up to time `until` (all of them for None), keeping both kinds of
        packets interleaved so the muxer buffers little."""
        if self.audio_in is None:
            return
        _, packets = self.audio_in
        while True:
            if self.pending is None:
                self.pending = next(packets, None)
                if self.pending is None:
                    return
            p = self.pending
            if p.dts is not None:  # None: the demuxer's flush packet
                if until is not None and p.pts is not None and p.pts * p.time_base > until:
                    return
                p.stream = self.audio[p.stream.index]
                self.container.mux(p)
            self.pending = None

    def finish(self) -> Path:
        for packet in self.video.encode():
            self.container.mux(packet)
        self.copy_audio(None)
        self.close()
        normal_modes(self.tmp)
        os.replace(self.tmp, self.out)
        return self.out

    def close(self) -> None:
        if self.audio_in is not None:
            self.audio_in[0].close()
            self.audio_in = None
        if self.container is not None:
            self.container.close()
            self.container = None

    def abort(self) -> None:
        try:
            self.close()
        finally:
            remove(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            self.abort()
        return False


def frame_name(index: int) -> str:
    """DIR/000001.png: numbered from 1, as ffmpeg's image2 muxer numbers (`ffmpeg -i DIR/%06d.png`)."""
    return f"{index + 1:06d}.png"
