"""Encode the simulator's sample videos, once: `.venv/bin/python tools/make_sim_samples.py`.

One tiny H.264 MP4 per frame size the simulated catalog can ask for (every resolution tier x
aspect ratio of every model, plus the models' explicit `supported_sizes`), written to
`client/_simulator/samples/<W>x<H>.mp4`. Each holds `FRAMES` identical solid-colour frames (an
IDR frame and skipped P-frames, no B-frames, so no composition offsets), in a faststart MP4 whose
single `stts` entry lets the simulator retime it to any whole number of seconds by rewriting a few
header fields (`_video.retime`). Only this script uses PyAV; the simulator never encodes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without relying on the install layout

from client._simulator._catalog import CATALOG, dimensions  # noqa: E402
from client._simulator._video import FRAMES, SAMPLES_DIR, retime  # noqa: E402

FPS = FRAMES  # one second at encode time; the timescale (FPS * 1024) divides evenly for any length
COLOUR = (72, 150, 110)  # Y, U, V: a muted teal


def wanted_sizes() -> list[tuple[int, int]]:
    sizes: set[tuple[int, int]] = set()
    for model in CATALOG:
        for tier in model["supported_resolutions"] or []:
            for ratio in model["supported_aspect_ratios"] or []:
                sizes.add(dimensions(tier, ratio))
        for size in model["supported_sizes"] or []:
            w, h = size.split("x")
            sizes.add((int(w), int(h)))
    return sorted(sizes)


def encode(width: int, height: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.mp4"  # faststart needs a real, seekable file
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {
                "crf": "40",
                "preset": "veryslow",
                "x264-params": f"bframes=0:keyint={FRAMES}:scenecut=0",
            }
            for i in range(FRAMES):
                frame = av.VideoFrame(width, height, "yuv420p")
                for plane, value in zip(frame.planes, COLOUR, strict=True):
                    plane.update(bytes([value]) * (plane.line_size * plane.height))
                frame.pts = i
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path.read_bytes()


def main() -> int:
    SAMPLES_DIR.mkdir(exist_ok=True)
    for old in SAMPLES_DIR.glob("*.mp4"):
        old.unlink()
    total = 0
    for width, height in wanted_sizes():
        data = encode(width, height)
        retime(data, 4)  # fails loudly if the layout is not one the simulator can retime
        (SAMPLES_DIR / f"{width}x{height}.mp4").write_bytes(data)
        total += len(data)
        print(f"{width}x{height}: {len(data)} bytes")
    print(f"{len(wanted_sizes())} samples, {total} bytes in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
