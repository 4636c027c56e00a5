"""Fixtures shared by every test file: tiny configs and `transformers` twins.

- `tiny_config(**overrides)`: a 2-layer, width-32, vocab-100 `GPT2Config` (see `harness`).
- `hf_twin(config, hf_class="GPT2LMHeadModel", **hf_kwargs)`: a randomly initialized
  `transformers` model with the same settings, in eval mode, saved with `save_pretrained`
  to a fresh folder under `tmp_path`; returns `(hf_model, folder)`. Load the folder with
  gpt2kit to compare numbers.

Nothing is downloaded: `HF_HUB_OFFLINE=1` is set for the whole session.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from gpt2kit.config import GPT2Config
from harness import tiny_config as _tiny_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Our bookkeeping keys that `transformers.GPT2Config` has no use for.
_NOT_HF = ("gpt2kit_version", "architectures", "model_type")


def hf_config(config: GPT2Config, **hf_kwargs: Any):
    """The `transformers.GPT2Config` with the same fields as `config`."""
    import transformers

    data = {k: v for k, v in config.to_dict().items() if k not in _NOT_HF}
    return transformers.GPT2Config(**{**data, **hf_kwargs})


def make_hf_twin(
    config: GPT2Config,
    folder: Path,
    hf_class: str = "GPT2LMHeadModel",
    seed: int = 0,
    attn_implementation: str = "eager",
    **save_kwargs: Any,
):
    """Build, seed and save a `transformers` model of class `hf_class`; return `(model, folder)`."""
    import transformers

    torch.manual_seed(seed)
    cls = getattr(transformers, hf_class)
    hf_cfg = hf_config(config)
    hf_cfg._attn_implementation = attn_implementation
    model = cls(hf_cfg).eval()
    model.save_pretrained(folder, **save_kwargs)
    return model, folder


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Torch on one thread for a module of tiny training runs (threads only contend on a
    shared CPU there), restored afterwards. (These modules once called
    `torch.set_num_threads(1)` at import, which made every later test of the run
    single-threaded.) Use: `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def tiny_config() -> Callable[..., GPT2Config]:
    """Factory: `tiny_config(n_layer=3)` -> a tiny `GPT2Config` with overrides."""
    return _tiny_config


@pytest.fixture
def hf_twin(tmp_path: Path) -> Callable[..., Any]:
    """Factory: `hf_twin(config, "GPT2Model")` -> `(transformers model, saved folder)`."""
    counter = iter(range(1000))

    def make(config: GPT2Config, hf_class: str = "GPT2LMHeadModel", **kwargs: Any):
        return make_hf_twin(config, tmp_path / f"hf-{hf_class}-{next(counter)}", hf_class, **kwargs)

    return make
