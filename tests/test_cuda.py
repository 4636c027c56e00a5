"""The GPU paths, checked on a GPU: skipped where CUDA is absent (CI has none).

Everything here also runs on the CPU elsewhere in the suite; these tests prove the
device-specific code on a real GPU: parity with `transformers` in fp32 on CUDA, the
decode step captured as a CUDA graph (`cache_implementation="static"`, which compiles with
`mode="reduce-overhead"` on CUDA) giving the eager loop's ids, the loop's late liveness
read (`_LiveFlag`, pinned memory + event) stopping exactly where the CPU loop stops, and
the chunked LM-head loss (its gradients computed in the forward) against plain
cross-entropy under bf16 autocast.

    python -m pytest tests/test_cuda.py -q     # on a machine with a GPU
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import make_hf_twin
from gpt2kit import GPT2LMHeadModel
from gpt2kit.generation import generate
from gpt2kit.generation.compiled import release_static_decoders
from gpt2kit.models.losses import linear_cross_entropy
from harness import left_padded_prompts, tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

PAD = 98


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """(gpt2kit on CUDA, transformers on CUDA, gpt2kit on CPU), same weights, fp32."""
    cfg = tiny_config(n_layer=3, n_embd=48, n_head=4, initializer_range=0.3)
    hf, folder = make_hf_twin(cfg, tmp_path_factory.mktemp("cuda") / "m", seed=1)
    cpu = GPT2LMHeadModel.from_pretrained(folder).eval()
    gpu = GPT2LMHeadModel.from_pretrained(folder).eval().cuda()
    return gpu, hf.cuda(), cpu


def test_logits_match_transformers_fp32(twins):
    gpu, hf, _ = twins
    ids, mask = left_padded_prompts()
    # Positions from the mask, given to both (transformers counts pads as positions).
    inputs = dict(
        input_ids=ids.cuda(),
        attention_mask=mask.cuda(),
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0).cuda(),
    )
    with torch.no_grad():
        ours, ref = gpu(**inputs).logits, hf(**inputs).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], ref[real], rtol=1e-5, atol=1e-5)


def test_greedy_ids_match_transformers_and_cpu(twins):
    gpu, hf, cpu = twins
    ids, mask = left_padded_prompts()
    kw = dict(max_new_tokens=12, pad_token_id=PAD, eos_token_id=None)
    ours = generate(gpu, ids.cuda(), mask.cuda(), **kw)
    with torch.no_grad():
        ref = hf.generate(ids.cuda(), attention_mask=mask.cuda(), do_sample=False, **kw)
    assert torch.equal(ours.cpu(), ref.cpu())
    assert torch.equal(ours.cpu(), generate(cpu, ids, mask, **kw))


def test_early_stop_on_gpu_equals_cpu(twins):
    """Rows stop at EOS: the GPU loop reads "any row live?" one step late and drops the
    extra step; its ids are the CPU loop's."""
    gpu, _, cpu = twins
    ids, mask = left_padded_prompts()
    third = generate(cpu, ids, mask, max_new_tokens=3, eos_token_id=None, pad_token_id=PAD)
    kw = dict(max_new_tokens=20, pad_token_id=PAD, eos_token_id=sorted(set(third[:, -1].tolist())))
    on_cpu = generate(cpu, ids, mask, **kw)
    assert on_cpu.shape[1] < ids.shape[1] + 20
    assert torch.equal(generate(gpu, ids.cuda(), mask.cuda(), **kw).cpu(), on_cpu)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_captured_decode_equals_eager(twins, dtype):
    """`cache_implementation="static"` on CUDA: compiled with mode="reduce-overhead" (a
    CUDA graph recorded once, replayed per token). fp32: ids equal the eager dynamic
    loop's, on a second call too (the replay path) and with a different prompt length
    (same bucket). bf16: the fused kernels round differently, so greedy paths may part;
    every captured token must be the eager model's argmax on the captured context, to
    bf16 rounding."""
    gpu, _, _ = twins
    model = gpu if dtype == torch.float32 else GPT2LMHeadModel(gpu.config).eval().cuda()
    if dtype != torch.float32:
        model.load_state_dict(gpu.state_dict())
        model.to(dtype)
    ids, mask = left_padded_prompts(2)
    kw = dict(max_new_tokens=16, pad_token_id=PAD, eos_token_id=None)
    try:
        for prompt, prompt_mask in ((ids, mask), (ids, mask), (ids[:, 2:], mask[:, 2:])):
            args = (prompt.cuda(), prompt_mask.cuda())
            eager = generate(model, *args, **kw)
            captured = generate(model, *args, cache_implementation="static", **kw)
            if dtype == torch.float32:
                assert torch.equal(captured, eager)
            else:
                _assert_near_argmax(model, captured, args[1], prompt.shape[1])
        seeded = dict(do_sample=True, top_k=20, seed=5, cache_implementation="static", **kw)
        assert torch.equal(
            generate(model, ids.cuda(), mask.cuda(), **seeded),
            generate(model, ids.cuda(), mask.cuda(), **seeded),
        )
    finally:
        release_static_decoders(model)


def _assert_near_argmax(model, out, prompt_mask, prompt_len, tol=0.05):
    mask = torch.cat([prompt_mask, torch.ones_like(out[:, prompt_len:])], 1)
    with torch.no_grad():
        logits = model(
            input_ids=out, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)
        ).logits.float()
    step = logits[:, prompt_len - 1 : -1]  # the logits that chose each new token
    chosen = step.gather(-1, out[:, prompt_len:, None])[..., 0]
    gap = step.max(-1).values - chosen
    assert float(gap.max()) <= tol * float(step.abs().max()), float(gap.max())


def test_chunked_lm_loss_matches_cross_entropy_under_bf16_autocast():
    torch.manual_seed(0)
    hidden = torch.randn(300, 64, device="cuda", requires_grad=True)
    weight = torch.randn(1000, 64, device="cuda", requires_grad=True)
    labels = torch.randint(0, 1000, (300,), device="cuda")
    labels[::7] = -100
    with torch.autocast("cuda", torch.bfloat16):
        # what `transformers` computes under autocast: bf16 logits, fp32 cross-entropy
        ref = F.cross_entropy((hidden @ weight.T).float(), labels, ignore_index=-100)
        ours = linear_cross_entropy(hidden, weight, labels)
    grads = torch.autograd.grad(ours, (hidden, weight))
    ref_grads = torch.autograd.grad(ref, (hidden, weight))
    torch.testing.assert_close(ours, ref, rtol=2e-3, atol=1e-4)
    for a, b in zip(grads, ref_grads):
        assert a.dtype == b.dtype == torch.float32
        assert float((a - b).norm() / b.norm()) < 1e-2  # bf16 products, as the reference


def test_training_step_matches_cpu(twins):
    """The LM's training loss and gradients on the GPU equal the CPU's (fp32, train mode:
    the chunked LM-head loss)."""
    _, _, cpu = twins
    ids, _ = left_padded_prompts()
    ids = ids.clamp(max=97)
    models = []
    no_dropout = cpu.config.copy(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    for device in ("cpu", "cuda"):
        model = GPT2LMHeadModel(no_dropout).to(device)
        model.load_state_dict(cpu.state_dict())
        model.train()
        loss = model(input_ids=ids.to(device), labels=ids.to(device)).loss
        loss.backward()
        models.append((loss.detach().cpu(), model))
    torch.testing.assert_close(models[0][0], models[1][0], rtol=1e-5, atol=1e-5)
    # Gradients, not an optimizer step: AdamW's first step moves every weight by about
    # lr * sign(grad), so the sign of a gradient that is zero up to rounding (the key
    # biases') decides a 2e-3 difference.
    for (name, a), b in zip(models[0][1].named_parameters(), models[1][1].parameters()):
        torch.testing.assert_close(a.grad, b.grad.cpu(), rtol=1e-4, atol=1e-6, msg=name)
