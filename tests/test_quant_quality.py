"""Quality of weight-only quantization on the bundled default model (width 120: int4
groups of 32 are 32 + 32 + 32 + 24), on held-out text it was not trained on: the last 10%
of Tiny Shakespeare (cut at a line break, as the model's README says).

Budgets (issue 19): perplexity int8 within +1% of fp32, int4 within +5%; the fraction of
a 128-token greedy continuation where int8 picks fp32's tokens is reported (and must stay
high). Measured when written: fp32 126.28, int8 +0.22%, int4 (group 32) +0.73% over the
first 8192 held-out tokens (the test reads 4096); greedy agreement int8 1.00.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

from gpt2kit import GPT2LMHeadModel
from gpt2kit.pipelines.base import default_model_path
from gpt2kit.tokenizer import GPT2Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from test_quant import int4_kernel_numerics  # noqa: E402

DATA = Path("/work/shared/data/tinyshakespeare.txt")
TOKENS = 4096

pytestmark = pytest.mark.skipif(not DATA.is_file(), reason=f"{DATA} not present")


@pytest.fixture(scope="module")
def held_out() -> torch.Tensor:
    text = DATA.read_text()
    cut = text.rfind("\n", 0, int(len(text) * 0.9)) + 1
    tok = GPT2Tokenizer.from_pretrained(str(default_model_path()))
    return torch.tensor(tok.encode(text[cut:])[: TOKENS + 1])


def perplexity(model: GPT2LMHeadModel, ids: torch.Tensor, window: int = 256) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ids) - 1, window):
            chunk = ids[i : i + window + 1]
            logits = model(chunk[None, :-1]).logits[0]
            total += float(torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="sum"))
            count += len(chunk) - 1
    return math.exp(total / count)


@pytest.fixture(scope="module")
def fp32() -> GPT2LMHeadModel:
    return GPT2LMHeadModel.from_pretrained(default_model_path())


@pytest.fixture(scope="module")
def fp32_perplexity(fp32, held_out) -> float:
    return perplexity(fp32, held_out)


@pytest.mark.parametrize("method, budget", [("int8", 0.01), ("int4", 0.05)])
def test_held_out_perplexity_within_budget(fp32_perplexity, held_out, method, budget):
    quantized = GPT2LMHeadModel.from_pretrained(default_model_path(), quantization=method)
    base, ppl = fp32_perplexity, perplexity(quantized, held_out)
    print(f"\nperplexity fp32 {base:.3f}, {method} {ppl:.3f} ({100 * (ppl / base - 1):+.2f}%)")
    assert ppl <= base * (1 + budget)


def test_int8_greedy_agreement(fp32, held_out):
    quantized = GPT2LMHeadModel.from_pretrained(default_model_path(), quantization="int8")
    prompt = held_out[None, :16]
    a = fp32.generate(prompt, max_new_tokens=128, do_sample=False)[0, 16:]
    b = quantized.generate(prompt, max_new_tokens=128, do_sample=False)[0, 16:]
    agree = float((a == b).float().mean())
    print(f"\nint8 picks fp32's greedy token at {agree:.3f} of 128 positions")
    assert agree >= 0.9


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_native_step_picks_its_definitions_tokens(held_out, method):
    """The native quantized step against the module path with the same numerics over a
    128-token greedy run: int8 weights (int16 activations on CPUs with VNNI, kernels.c)
    against fp32 activations, what the kernel computed before VNNI, up to summation order
    (the int16 rounding is ~250x below the weights' own); int4 (int8 activations with VNNI)
    against the module path with the same int8 rounding (`int4_kernel_numerics`)."""
    from gpt2kit import decode, native

    quantized = GPT2LMHeadModel.from_pretrained(default_model_path(), quantization=method)
    prompt = held_out[None, :16]
    with torch.no_grad():
        fast = quantized.generate(prompt, max_new_tokens=128, do_sample=False)[0, 16:]
        with decode.disabled(), int4_kernel_numerics(quantized):
            slow = quantized.generate(prompt, max_new_tokens=128, do_sample=False)[0, 16:]
    agree = float((fast == slow).float().mean())
    kind = native.quantized_activations() if native.load() is not None else "no kernel"
    print(f"\n{method} native step ({kind}) picks the module path's token at {agree:.3f}")
    assert agree == 1.0


def test_int4_int8_activations_against_fp32_activations(held_out):
    """What the int4 kernel's int8 activation rounding costs: on the module path's own
    (fp32-activation) greedy run of 128 tokens, teacher-forced, the share of positions where
    the native step's next token (int8 activations with VNNI) is the module path's. A free
    run cannot show it: after the first flipped near-tie the two continue different texts.
    Measured when written (4 prompts of 16 tokens at held-out offsets 0, 2048, 4096, 6144):
    506 of 512, every flip at a top-2 logit margin of at most 0.023 (max |logit difference|
    0.17-0.31); this prompt (offset 0): 127 of 128. The threshold is the 0.97 that leaves
    room for a few more near-ties, not a bound."""
    from gpt2kit import QuantizationConfig, decode, native
    from gpt2kit.decode.plan import lm_step
    from gpt2kit.nn.cache import KVCache

    if native.load() is None:
        pytest.skip("no C compiler: no native kernels")
    model = GPT2LMHeadModel.from_pretrained(
        default_model_path(), quantization_config=QuantizationConfig(bits=4, input_activations=None)
    )  # (None: the module path's forward over the whole run multiplies fp32 activations too)
    with torch.no_grad():
        with decode.disabled():
            run = model.generate(held_out[None, :16], max_new_tokens=128, do_sample=False)[0]
        ref = model(run[None]).logits[0, 15:-1]
        cache, home, native_logits = KVCache(model.config.n_layer), {}, []
        for t in range(run.shape[0] - 1):
            logits = lm_step(model, run[None, t : t + 1], cache, home, {})
            if logits is None:
                pytest.skip("no native whole-step kernel here")
            native_logits.append(logits[0, 0])
        got = torch.stack(native_logits)[15:]
    agree = float((got.argmax(-1) == ref.argmax(-1)).float().mean())
    print(f"\nint4 native step, teacher-forced: the fp32-activation token at {agree:.3f}")
    assert agree >= 0.97
