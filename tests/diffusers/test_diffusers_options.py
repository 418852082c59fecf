"""A diffusers route's table: what it declares without loading anything, and its mistakes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from imagegate.errors import ConfigError
from imagegate.routes.diffusers.options import OPTIONS, declared_capabilities, read_options
from imagegate.routes.registry import ROUTE_TYPES


def test_an_api_process_reads_capabilities_without_importing_torch_or_diffusers() -> None:
    code = ("import sys; from imagegate.bootstrap import routing_of; "
            "from imagegate.routes.registry import ROUTE_TYPES; "
            "ROUTE_TYPES['diffusers'].declared_capabilities('d', {'model': 'x'}); "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_text_to_image_only_unless_the_table_declares_image_to_image() -> None:
    plain = ROUTE_TYPES["diffusers"].declared_capabilities("d", {"model": "x"})
    assert plain.modes == ("text-to-image",) and plain.max_references == 0
    both = declared_capabilities("d", {"model": "x", "image_to_image": True,
                                       "resolutions": ["1k"], "cost": {"1k": "0.002"}})
    assert both.modes == ("text-to-image", "image-to-image") and both.max_references == 1
    assert both.resolutions == ("1k",) and both.cost_micros == {"1k": 2000}


def test_defaults_suit_a_gpu_and_a_job_renders_at_its_scaled_size() -> None:
    opts = read_options("d", {"model": "black-forest-labs/FLUX.1-dev"})
    assert (opts.device, opts.dtype, opts.steps, opts.max_batch_size) == (
        "cuda", "bfloat16", 30, 8)
    assert not opts.allow_download and opts.local_dir is None
    assert opts.render_size(1024, 1024) == (1024, 1024)
    half = read_options("d", {"model": "x", "render_scale": 0.5, "size_multiple": 64})
    assert half.render_size(1376, 768) == (704, 384)
    assert read_options("d", {"model": "x", "recycle_memory_gib": 1.5}
                        ).recycle_memory_bytes == 3 * 2**29


@pytest.mark.parametrize("table,named", [
    ({}, "routes.d.model is required"),
    ({"model": "x", "dtype": "float64"}, "routes.d.dtype must be one of"),
    ({"model": "x", "device": "gpu"}, "routes.d.device"),
    ({"model": "x", "strength": 0}, "routes.d.strength"),
    ({"model": "x", "max_batch_size": 0}, "routes.d.max_batch_size"),
    ({"model": "x", "compile_mode": "fast"}, "routes.d.compile_mode"),
    ({"model": "x", "max_references": 4}, "unknown option routes.d.max_references"),
])
def test_a_bad_option_is_named(table: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        read_options("d", table)


def test_a_worker_without_the_extra_is_told_to_install_it() -> None:
    code = ("import sys; sys.modules['diffusers'] = None; "
            "from imagegate.errors import ConfigError; "
            "from imagegate.routes.diffusers.options import read_options; "
            "from imagegate.routes.diffusers.route import default_engine\n"
            "try:\n    default_engine('d', read_options('d', {'model': 'x'}))\n"
            "except ConfigError as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert "routes.d: a diffusers route needs torch" in out.stdout
    assert "pip install 'imagegate[diffusers]'" in out.stdout


def test_the_guide_lists_every_option_and_no_other() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "routes-diffusers.md").read_text()
    table = guide.split("| option | default | meaning |", 1)[1].split("\n\n", 1)[0]
    listed = {name for line in table.splitlines()[2:]
              for name in re.findall(r"`([a-z_]+)`", line.split("|")[1])}
    assert listed == set(OPTIONS)
