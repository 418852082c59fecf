"""Time the sandbox picture and the output encoders at the contract's extreme shapes.

Run: ``.venv/bin/python bench/bench_imaging.py [--repeat N]``. Prints a Markdown table and
writes it, with the date and the machine, to ``bench/results/imaging.md``. Each cell is the best
of N runs in milliseconds; "i2i render" lays three 1024x768 references out as a collage, and
"normalise" fits a 1024x1024 picture to the size and encodes it as PNG (a route's real path);
"png noisy" encodes a grainy photo-like picture, the worst case for the PNG compressor.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import PIL
from PIL import Image

from imagegate.contract import output_size
from imagegate.imaging import encode, normalise
from imagegate.routes.sandbox_picture import render_sandbox_picture

RATIOS = ("1:1", "8:1", "1:8")
TIERS = ("1k", "2k", "4k")
PROMPT = "A lighthouse on a cliff at dusk, gulls overhead, long exposure, film grain"
RESULTS = Path(__file__).parent / "results" / "imaging.md"
HEADER = ("| size | t2i render | i2i render | png encode | jpeg encode | normalise png "
          "| png noisy | png MiB |\n|---|---|---|---|---|---|---|---|")


def best_ms(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def row(ratio: str, tier: str, repeat: int, references: list[Image.Image]) -> str:
    width, height = output_size(ratio, tier)
    picture = render_sandbox_picture(PROMPT, width, height, seed=42)
    source = references[0].resize((1024, 1024))
    cells = [
        best_ms(lambda: render_sandbox_picture(PROMPT, width, height, seed=42), repeat),
        best_ms(lambda: render_sandbox_picture(PROMPT, width, height, seed=42,
                                               references=references), repeat),
        best_ms(lambda: encode(picture, "png"), repeat),
        best_ms(lambda: encode(picture, "jpeg"), repeat),
        best_ms(lambda: normalise(source, width, height, "png"), repeat),
    ]
    grainy = noisy(width, height)
    cells.append(best_ms(lambda: encode(grainy, "png"), repeat))
    size_mib = len(encode(picture, "png")) / 2**20
    timings = " | ".join(f"{ms:.0f}" for ms in cells)
    return f"| {ratio} {tier} {width}x{height} | {timings} | {size_mib:.1f} |"


def noisy(width: int, height: int) -> Image.Image:
    """Coarse blotches, fine grain and a gradient, one per channel: compresses like a photo."""
    blotches = Image.effect_noise((max(1, width // 8), max(1, height // 8)), 80)
    grain = Image.effect_noise((width, height), 12)
    ramp = Image.linear_gradient("L").resize((width, height))
    return Image.merge("RGB", (blotches.resize((width, height), Image.Resampling.BICUBIC),
                               grain, ramp))


def machine() -> str:
    # The same facts as `uname -m` and `nproc` (CPUs this process may use).
    return (f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
            f"Python {platform.python_version()}, Pillow {PIL.__version__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    references = [render_sandbox_picture(f"reference {k}", 1024, 768, seed=k) for k in range(3)]
    print(machine())
    print(HEADER, flush=True)
    lines = [HEADER]
    for tier in TIERS:
        for ratio in RATIOS:
            lines.append(row(ratio, tier, args.repeat, references))
            print(lines[-1], flush=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(f"# Imaging benchmark\n\n{stamp} · {machine()} · best of {args.repeat}, "
                       f"milliseconds\n\nCommand: `{' '.join(['python', *sys.argv])}`\n\n"
                       + "\n".join(lines) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
