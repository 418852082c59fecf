from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# diffusers' auto pipelines import every pipeline family, and some of those call deprecated
# torch APIs at import time; that is the libraries' business, not a failure of these tests
# (which run with warnings as errors). Imported once here, they are not imported again.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", FutureWarning)
    import diffusers.pipelines.auto_pipeline  # noqa: F401

from tiny_pipeline import save_tiny_pipeline


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny Stable Diffusion pipeline saved to disk, shared by every test of the session."""
    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd"))
