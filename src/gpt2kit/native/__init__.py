"""Native CPU kernels, compiled on first use: for decoding, few-row products, the
attention of one new token and every transformer block of a decoding step in one call;
around them, selection over the vocabulary, the per-row LoRA update and training's dropout
(`dropout`: PyTorch's own mask and product, forward + backward 5-6x `F.dropout`'s speed
(`benchmarks/bench_dropout.py`); used by `gpt2kit.nn.dropout`). A leaf package (imports
only torch), so `nn` and `decode` can both call it.

Why. Batch-1 decoding reads every weight once per token, so its speed is the memory
bandwidth the products reach. PyTorch's CPU products (MKL sgemv, oneDNN) stream GPT-2
small's weights at 10-15 GB/s on this project's 2-core EPYC where a plain read reaches
18-24 GB/s; `kernels.c` (each thread reads its rows as four long sequential streams side
by side, on PyTorch's own OpenMP threads) streams them at 21-30 GB/s, and widens bf16
weights in registers, so bf16 decoding reads half the bytes on CPUs without bf16 units
too. Up to `MAX_FP32_ROWS` rows of x (a short prompt, a small batch or beam; bf16 rows
where PyTorch multiplies bf16 one row at a time) share one pass over the weights. The step's
attention (split heads, write the cache, SDPA: ~20 PyTorch ops per layer) is one call,
and for a few rows at one position (batch 1, a small batch's step) so are all the blocks
(`run_blocks`) or a language model's whole step, embedding to logits (`run_step`), driven
by `decode/plan.py`. The decoder's weight
arena (`decode/weights.py`) sits on 2 MiB pages (`huge_page_empty`).
Measured end to end in `benchmarks/bench_generation.py` (see docs/variants/causal-lm.md).

How. `kernels.c` ships with the package and is compiled with the system C compiler (`$CC`,
else `cc`/`gcc`; `-O3 -march=native -fopenmp`: ~35 s with GCC 12 on the 2-core Xeon, once per
source, CPU and flags; the first quantized or native call waits for it) into a per-user cache
(`$GPT2KIT_CACHE/native`, default `~/.cache/gpt2kit/native`, else the temp dir), keyed by
the source, the flags and the CPU, written atomically, and loaded with `ctypes`: no build
step at install, nothing to download, no PyTorch headers. The library links `libgomp.so.1`, which resolves
to the copy PyTorch already loaded, so both share one thread pool.

Where there is no compiler, the system is not Linux, `GPT2KIT_NATIVE=0` is set, or the
build fails, `load()` returns None (a failed build is logged once, as a warning) and the
ordinary PyTorch products run: same results up to summation order, only slower. One
call opts out with `gpt2kit.decode.disabled()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import mmap
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger("gpt2kit")

SOURCE = Path(__file__).with_name("kernels.c")
# fp32 inputs of up to this many rows multiply faster through `gemv` (one pass over the
# weights for all rows) than through BLAS or oneDNN's packed weights on GPT-2 small's
# projections (measured on a 2-core EPYC; see `decode/decoder.py`).
MAX_FP32_ROWS = 32
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11"]

_lib: ctypes.CDLL | None = None
_tried = False


def cache_dir() -> Path:
    """Where built kernels live: `$GPT2KIT_CACHE/native`, else `~/.cache/gpt2kit/native`,
    else (no writable home, as in some containers) a per-user folder in the temp dir."""
    root = os.environ.get("GPT2KIT_CACHE") or Path.home() / ".cache" / "gpt2kit"
    folder = Path(root) / "native"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"gpt2kit-native-{uid}"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _cpu_id() -> str:
    """What `-march=native` depends on: the machine and its CPU feature flags."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            text += "".join(line for line in f if line.startswith(("flags", "Features")))
    except OSError:
        pass
    return text


def _build(cc: str) -> Path:
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([cc, *FLAGS, _cpu_id()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"kernels-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run(
            [cc, *FLAGS, str(SOURCE), "-lm", "-o", tmp], check=True, capture_output=True, text=True
        )
        os.replace(tmp, target)  # atomic: a concurrent build writes the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load() -> ctypes.CDLL | None:
    """The compiled kernels, building them on the first call; None where unavailable."""
    global _lib, _tried
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("GPT2KIT_NATIVE", "1") == "0":
        return None
    if platform.system() != "Linux":  # (macOS clang has no -fopenmp; untested elsewhere)
        logger.info("gpt2kit's native decode kernel is built on Linux only; using PyTorch's")
        return None
    cc = _compiler()
    if cc is None:
        logger.info("no C compiler found: batch-1 CPU decoding uses PyTorch's products")
        return None
    try:
        lib = ctypes.CDLL(str(_build(cc)))
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        logger.warning(
            "could not build gpt2kit's native decode kernel (%s); batch-1 CPU decoding "
            "uses PyTorch's products (slower). Set GPT2KIT_NATIVE=0 to skip the attempt.",
            detail.strip()[-500:],
        )
        return None
    pointers = [ctypes.c_void_p] * 4
    sizes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    lib.gpt2kit_gemv_f32.argtypes = pointers + sizes
    lib.gpt2kit_gemv_f32.restype = None
    lib.gpt2kit_gemv_bf16.argtypes = pointers + sizes
    lib.gpt2kit_gemv_bf16.restype = ctypes.c_int
    for name in ("gpt2kit_attend_one_f32", "gpt2kit_attend_one_bf16"):
        fn = getattr(lib, name)
        fn.argtypes = pointers + [ctypes.c_int64] * 5 + [ctypes.c_float, ctypes.c_int]
        fn.restype = ctypes.c_int
    for name in ("gpt2kit_blocks_f32", "gpt2kit_blocks_bf16"):
        fn = getattr(lib, name)
        fn.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_void_p]
        fn.argtypes += [ctypes.c_int64] * 6 + [ctypes.c_float, ctypes.c_int, ctypes.c_int]
        fn.argtypes += [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float]
        fn.restype = ctypes.c_int
    fn = lib.gpt2kit_blocks_q
    fn.argtypes = lib.gpt2kit_blocks_f32.argtypes + [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    fn.restype = ctypes.c_int
    lib.gpt2kit_qgemv.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    lib.gpt2kit_qgemv.argtypes += [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 3 + [ctypes.c_int]
    lib.gpt2kit_qgemv.restype = None
    lib.gpt2kit_dequantize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.gpt2kit_dequantize.argtypes += [ctypes.c_int, ctypes.c_void_p, ctypes.c_int64]
    lib.gpt2kit_dequantize.argtypes += [ctypes.c_int64, ctypes.c_int]
    lib.gpt2kit_dequantize.restype = None
    lib.gpt2kit_quantize_rows.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 2
    lib.gpt2kit_quantize_rows.argtypes += [ctypes.c_int]
    lib.gpt2kit_quantize_rows.restype = None
    lib.gpt2kit_scale_rows.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 2
    lib.gpt2kit_scale_rows.argtypes += [ctypes.c_int]
    lib.gpt2kit_scale_rows.restype = None
    lib.gpt2kit_qvnni.argtypes = []
    lib.gpt2kit_qvnni.restype = ctypes.c_int
    lib.gpt2kit_qvnni_emulated.argtypes = []
    lib.gpt2kit_qvnni_emulated.restype = ctypes.c_int
    lib.gpt2kit_amx.argtypes = [ctypes.c_int]
    lib.gpt2kit_amx.restype = ctypes.c_int
    lib.gpt2kit_w8a8_amx.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 3 + [ctypes.c_int]
    lib.gpt2kit_w8a8_amx.restype = ctypes.c_int
    # Intel AMX tiles for the int8 products of several rows (kernels.c, "AMX"), where the
    # CPU has them, this build compiled them and Linux grants the tile state
    lib.gpt2kit_amx(int(os.environ.get("GPT2KIT_AMX", "1") != "0"))
    _lib = lib
    return _lib


def loaded() -> bool:
    """Whether the kernels are built and loaded (never builds)."""
    return _lib is not None


def supports(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `gemv(x, weight, ...)` applies: CPU, fp32 or bf16 alike, contiguous weight."""
    return (
        x.dtype in (torch.float32, torch.bfloat16)
        and weight.dtype == x.dtype
        and weight.device.type == "cpu"
        and weight.is_contiguous()
    )


def gemv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """`F.linear(x, weight, bias)` on CPU for a few rows `x [..., in]`: one pass over the
    weights for all rows (a row costs compute, not memory traffic).

    Call only after `load()` returned the library and `supports(x, weight)` holds.
    """
    lib = _lib
    assert lib is not None
    out_features, in_features = weight.shape
    x = x.contiguous()
    rows = x.numel() // in_features
    y = torch.empty(*x.shape[:-1], out_features, dtype=x.dtype)
    b = None if bias is None else bias.contiguous().data_ptr()
    args = (weight.data_ptr(), x.data_ptr(), b, y.data_ptr(), rows, out_features, in_features)
    if x.dtype == torch.float32:
        lib.gpt2kit_gemv_f32(*args, torch.get_num_threads())
    elif lib.gpt2kit_gemv_bf16(*args, torch.get_num_threads()):
        raise MemoryError(f"gpt2kit native gemv: out of memory for a {rows}-row product")
    return y


# kernels.c's W_ codes for quantized weights, by bits
QUANT_KINDS = {8: 2, 4: 3}


def qgemv(
    x: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    bits: int,
    group_size: int | None,
    in_features: int,
    bias: torch.Tensor | None,
) -> torch.Tensor:
    """`F.linear(x, W, bias)` for fp32 `x [..., in]` on CPU and a quantized `W`: int8
    `qweight [out, in]` with `scales [out]`, or int4 `qweight [out, in / 2]` (the layout
    of `gpt2kit/quantization/tensor.py`) with `scales [out, groups]`. The weights are read
    as stored (1 or 1/2 byte each) and widened in registers; one pass for all rows.

    Call only after `load()` returned the library, with contiguous CPU tensors (the
    caller, `CPUDecoder`, checks)."""
    lib = _lib
    assert lib is not None
    out_features = qweight.shape[0]
    x = x.contiguous()
    rows = x.numel() // in_features
    y = torch.empty(*x.shape[:-1], out_features, dtype=torch.float32)
    b = None if bias is None else bias.contiguous().data_ptr()
    lib.gpt2kit_qgemv(
        qweight.data_ptr(),
        scales.data_ptr(),
        group_size or 0,
        QUANT_KINDS[bits],
        x.data_ptr(),
        b,
        y.data_ptr(),
        rows,
        out_features,
        in_features,
        torch.get_num_threads(),
    )
    return y


def quantized_activations() -> str:
    """How the quantized products (`qgemv`, the whole quantized step) multiply on this
    CPU: "int16 (VNNI, 512-bit)" / "int16 (VNNI, 256-bit)" / "int16 (AVX2, 256-bit)"
    (the same kernels with each VNNI dot emulated by two AVX2 instructions) where x is
    rounded per row and product (kernels.c) to int16 for int8 weights and to int8 for int4
    weights (the name predates the latter), "fp32" where the weights are widened to fp32
    (no AVX2). Call only after `load()` returned the library."""
    lib = _lib
    assert lib is not None
    width = lib.gpt2kit_qvnni()
    if not width:
        return "fp32"
    return f"int16 ({'AVX2' if lib.gpt2kit_qvnni_emulated() else 'VNNI'}, {width}-bit)"


def amx() -> bool:
    """Whether the int8 products of several rows run on Intel AMX tiles (kernels.c,
    "AMX"): the CPU has AMX-INT8, the kernels were built for it and Linux granted the tile
    state, and neither `set_amx(False)` nor GPT2KIT_AMX=0 turned them off. Call only after
    `load()` returned the library."""
    lib = _lib
    assert lib is not None
    return bool(lib.gpt2kit_amx(-1))


def set_amx(enabled: bool) -> bool:
    """Turn the AMX kernels on or off (tests compare them with the VNNI ones); returns
    whether they are on now (False where this CPU or build has none)."""
    lib = _lib
    assert lib is not None
    return bool(lib.gpt2kit_amx(int(enabled)))


def w8a8_linear(
    xq: torch.Tensor, sx: torch.Tensor, q: torch.Tensor, sw: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor | None:
    """`scale_rows(int8_matmul(xq, q), sx, sw, bias)` in one native pass on AMX tiles, the
    same values (the int32 sums are exact either way); None where the tiles are off or the
    input width is not a multiple of 64 (then do it the other way)."""
    lib = _lib
    assert lib is not None and xq.dtype == q.dtype == torch.int8
    rows, k = xq.shape
    n = q.shape[0]
    y = torch.empty(rows, n)
    b = bias.data_ptr() if bias is not None else None
    threads = torch.get_num_threads()
    ptrs = (xq.data_ptr(), sx.data_ptr(), q.data_ptr(), sw.data_ptr(), b, y.data_ptr())
    return y if lib.gpt2kit_w8a8_amx(*ptrs, rows, n, k, threads) else None


def dequantize(
    qweight: torch.Tensor, scales: torch.Tensor, bits: int, group_size: int | None, in_features: int
) -> torch.Tensor:
    """The fp32 matrix `[out, in]` of quantized weights (as `qgemv` reads them), built on
    torch's threads: a prompt's product multiplies it with BLAS."""
    lib = _lib
    assert lib is not None
    out = torch.empty(qweight.shape[0], in_features)
    lib.gpt2kit_dequantize(
        qweight.data_ptr(),
        scales.data_ptr(),
        group_size or 0,
        QUANT_KINDS[bits],
        out.data_ptr(),
        qweight.shape[0],
        in_features,
        torch.get_num_threads(),
    )
    return out


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`quantization.modules.quantize_activations(x)` for fp32 `x [rows, in]` on CPU, in one
    pass: `(q [rows, in] int8, scale [rows, 1] fp32)`, the same values."""
    lib = _lib
    assert lib is not None and x.dtype == torch.float32
    x = x.contiguous()
    rows, n = x.shape
    q = torch.empty(rows, n, dtype=torch.int8)
    scale = torch.empty(rows, 1)
    threads = torch.get_num_threads()
    lib.gpt2kit_quantize_rows(x.data_ptr(), q.data_ptr(), scale.data_ptr(), rows, n, threads)
    return q, scale


def scale_rows(
    acc: torch.Tensor, sx: torch.Tensor, sw: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """`acc [rows, out]` int32 sums scaled back in one pass: `bias + (acc * sw) * sx` (fp32,
    `acc * sw` rounded, then one FMA: the values of `prompt_product`'s PyTorch ops)."""
    lib = _lib
    assert lib is not None and acc.dtype == torch.int32 and acc.is_contiguous()
    rows, n = acc.shape
    y = torch.empty(rows, n)
    b = bias.data_ptr() if bias is not None else None
    lib.gpt2kit_scale_rows(
        acc.data_ptr(),
        sx.data_ptr(),
        sw.data_ptr(),
        b,
        y.data_ptr(),
        rows,
        n,
        torch.get_num_threads(),
    )
    return y


def attend_one(
    qkv: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, pos: int, n_head: int, scale: float
) -> torch.Tensor:
    """One decoding step of causal self-attention, from the fused projection `qkv [B, 1,
    3d]` (q | k | v): writes the token's key and value at position `pos` of the cache
    buffers `keys`/`values [B, H, capacity, hs]` (contiguous, same dtype) and returns
    softmax(scale * q k^T) v over positions 0..pos as `[B, 1, d]`.

    Why: in eager batch-1 decoding, splitting q/k/v into heads, writing the cache and one
    SDPA call are ~20 PyTorch ops per layer (~0.2 ms on this project's CPU, 124M: ~2.5 ms a
    token), for ~10 us of arithmetic. Same math as SDPA (fp32, max-subtracted softmax).
    """
    lib = _lib
    assert lib is not None
    B, _, three_d = qkv.shape
    hs = three_d // 3 // n_head
    out = torch.empty(B, 1, three_d // 3, dtype=qkv.dtype)
    fn = lib.gpt2kit_attend_one_f32 if qkv.dtype == torch.float32 else lib.gpt2kit_attend_one_bf16
    ptrs = (qkv.contiguous().data_ptr(), keys.data_ptr(), values.data_ptr(), out.data_ptr())
    if fn(*ptrs, B, n_head, hs, keys.shape[2], pos, scale, torch.get_num_threads()):
        raise MemoryError("gpt2kit native attention: out of memory")
    return out


HUGE_PAGE = 2 << 20  # bytes of a transparent huge page on x86-64 and most arm64 Linux


def huge_page_empty(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialized 1-D tensor whose memory Linux is asked to back with 2 MiB pages
    (`madvise(MADV_HUGEPAGE)`), starting on a 2 MiB boundary; a plain `torch.empty` where
    that cannot apply (less than one huge page, or no `madvise`).

    Why: batch-1 decoding streams every weight once per step. With 4 KiB pages that is a
    TLB miss (a page walk) every 4 KiB and the CPU's stream prefetchers stop at each page
    edge; with 2 MiB pages both go away. Reading GPT-2 small's weights through the decode
    kernel, interleaved on this project's 2-core EPYC: 1.045-1.06x the bandwidth (paired
    medians of 80 rounds). Where transparent huge pages are off (`never`) the advice is a
    no-op and nothing else changes.

    The memory is an anonymous `mmap` the tensor keeps alive (`torch.frombuffer`), not the
    allocator's: advice given to a region the allocator may later hand to someone else
    would outlive this tensor.
    """
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if nbytes < HUGE_PAGE or not hasattr(mmap, "MADV_HUGEPAGE"):
        return torch.empty(numel, dtype=dtype)
    # private, not the default shared mapping: shared anonymous memory is shmem, whose huge
    # pages are a separate setting (`shmem_enabled`, usually off); + slack to start aligned
    region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=mmap.MAP_PRIVATE)
    with contextlib.suppress(OSError):  # (a kernel built without transparent huge pages)
        region.madvise(mmap.MADV_HUGEPAGE)
    raw = torch.frombuffer(region, dtype=torch.uint8)
    skip = -raw.data_ptr() % HUGE_PAGE
    return raw[skip : skip + nbytes].view(dtype)


# The activations `run_blocks` computes (codes of kernels.c's ACT_ enum); `gelu_fast` is
# `gelu_new`'s formula.
ACTIVATIONS = {
    "gelu_new": 0,
    "gelu_pytorch_tanh": 0,
    "gelu_fast": 0,
    "gelu": 1,
    "relu": 2,
    "silu": 3,
    "swish": 3,
    "quick_gelu": 4,
    "linear": 5,
}
WEIGHTS_PER_BLOCK = 12


def pointer_table(tensors: list[torch.Tensor | None]) -> ctypes.Array:
    """The data pointers of `tensors` (None: NULL) as a C array of pointers."""
    return (ctypes.c_void_p * len(tensors))(*(None if t is None else t.data_ptr() for t in tensors))


@dataclass(frozen=True)
class Blocks:
    """What `run_blocks` and `run_step` read of a model's transformer blocks, built once per
    model (`decode/plan.py` keeps it with the checks it rests on).

    `table`: `WEIGHTS_PER_BLOCK` pointers per block (`pointer_table`), to tensors of one
    dtype (`dtype`, fp32 or bf16), contiguous, on CPU: ln_1 weight, bias; attn c_attn weight
    `[3d, d]`, bias; attn c_proj weight `[d, d]`, bias; ln_2 weight, bias; mlp c_fc weight
    `[inner, d]`, bias; mlp c_proj weight `[d, inner]`, bias (biases may be NULL). The
    holder keeps those tensors alive. `scales[i]`: block i's attention scale; `eps` the
    blocks' layer-norm eps; `activation` a key of `ACTIVATIONS`.
    """

    table: ctypes.Array
    scales: ctypes.Array  # float per block
    dtype: torch.dtype
    n_head: int
    inner: int
    eps: float
    activation: str
    # quantized projections: (bits, group size, the scales' pointer table: four per block,
    # then the LM head's and the token embedding's, None for a float embedding)
    quant: tuple[int, int, ctypes.Array] | None = None

    @classmethod
    def build(
        cls,
        tensors: list[torch.Tensor | None],
        scales: list[float],
        n_head: int,
        inner: int,
        eps: float,
        activation: str,
        quant: tuple[int, int, list[torch.Tensor | None]] | None = None,
    ) -> Blocks:
        assert len(tensors) == len(scales) * WEIGHTS_PER_BLOCK and tensors[0] is not None
        table, scale_table = pointer_table(tensors), (ctypes.c_float * len(scales))(*scales)
        q = None if quant is None else (quant[0], quant[1], pointer_table(quant[2]))
        return cls(table, scale_table, tensors[0].dtype, n_head, inner, eps, activation, q)


def run_blocks(x: torch.Tensor, blocks: Blocks, caches: list[torch.Tensor], pos: int) -> None:
    """Every transformer block of one decoding step in one call, in place on the hidden
    states `x [B, 1, d]` (contiguous, `blocks.dtype`) of B rows' tokens, all at position
    `pos`.

    `caches` holds each block's key and value buffers (`[B, n_head, capacity, d /
    n_head]`, one capacity `> pos`, contiguous, the blocks' dtype), where the tokens' keys
    and values are written. (The weights are built once per model; the caches' pointers are
    passed per call, so threads decoding with one model do not share mutable state.)

    Why: between the products, a step's PyTorch ops (layer norms, activation, residual
    adds, module and kernel calls: ~15 per block) cost ~5-8 ms of a ~35 ms GPT-2 small fp32
    step on this project's CPU while the memory bus idles; here they take microseconds and
    the threads stay in one parallel region. Same arithmetic as the module path (values
    rounded to bf16 where a bf16 model stores them), up to summation order.
    """
    assert x.is_contiguous() and x.dtype == blocks.dtype and x.shape[0] == caches[0].shape[0]
    _call_blocks(blocks, caches, pos, x_ptr=x.data_ptr())


# what `run_step`'s head holds, in order (kernels.c's HEAD_ enum)
HEAD_WEIGHTS = ("wte", "wpe", "ln_f.weight", "ln_f.bias", "lm_head.weight", "lm_head.bias")


def run_step(
    tokens: torch.Tensor,
    blocks: Blocks,
    head: list[torch.Tensor | None],
    head_eps: float,
    caches: list[torch.Tensor],
    pos: int,
) -> torch.Tensor:
    """A whole decoding step of an LM-head model in one call: the logits `[B, vocab]` (the
    blocks' dtype) of the tokens after `tokens [B]` (int64, contiguous), all at position
    `pos`.

    As `run_blocks`, on the embeddings `wte[tokens] + wpe[pos]` instead of given hidden
    states, followed by the final layer norm (eps `head_eps`) and the LM head. `head` holds
    the tensors named by `HEAD_WEIGHTS` (the LM head's bias may be None): the embeddings
    `[vocab, d]` and `[n_positions, d]` (`pos` within), and the LM head weight `[vocab,
    d]`, of the blocks' dtype, contiguous, on CPU; the caller checks `tokens` and `pos`.

    Why: the embedding, final norm and LM head calls of the module path, and the Python
    of two model forwards around them, were ~1 ms of a ~33 ms GPT-2 small step after the
    blocks went native; the LM head's threads also join the step's parallel region.
    """
    lm_weight = head[4]
    assert lm_weight is not None
    assert tokens.dtype == torch.int64 and tokens.is_contiguous() and tokens.dim() == 1
    assert tokens.shape[0] == caches[0].shape[0]
    B, vocab = tokens.shape[0], lm_weight.shape[0]
    logits = torch.empty(B, vocab, dtype=blocks.dtype)
    scores = logits if blocks.dtype == torch.float32 else torch.empty(B, vocab)  # (fp32 sums)
    table = pointer_table([*head, scores, None if scores is logits else logits])
    _call_blocks(
        blocks, caches, pos, head=table, tokens=tokens.data_ptr(), vocab=vocab, head_eps=head_eps
    )
    return logits


def _call_blocks(
    blocks: Blocks,
    caches: list[torch.Tensor],
    pos: int,
    *,
    x_ptr: int | None = None,
    head: ctypes.Array | None = None,
    tokens: int | None = None,
    vocab: int = 0,
    head_eps: float = 0.0,
) -> None:
    """`gpt2kit_blocks_*` on the hidden states at `x_ptr`, or with `head` on the token ids
    at `tokens` (`run_step`); the row count is the caches'."""
    lib = _lib
    assert lib is not None
    n_layer, (rows, n_head, capacity, head_dim) = len(blocks.scales), caches[0].shape
    assert len(caches) == 2 * n_layer
    assert capacity > pos and all(c.shape == caches[0].shape for c in caches)
    fn = lib.gpt2kit_blocks_f32 if blocks.dtype == torch.float32 else lib.gpt2kit_blocks_bf16
    kv = pointer_table(caches)  # type: ignore[arg-type]
    args = (blocks.table, kv, blocks.scales, n_layer, x_ptr, rows, n_head * head_dim)
    args += (blocks.n_head, blocks.inner, capacity, pos, blocks.eps)
    args += (ACTIVATIONS[blocks.activation], torch.get_num_threads(), head, tokens, vocab, head_eps)
    if blocks.quant is not None:
        bits, group, qs = blocks.quant
        if lib.gpt2kit_blocks_q(*args, qs, group, QUANT_KINDS[bits]):
            raise MemoryError("gpt2kit native decoding step: out of memory")
        return
    if fn(*args):
        raise MemoryError("gpt2kit native decoding step: out of memory")


def _register_op() -> Any:
    """`torch.ops.gpt2kit.gemv`: the kernel as an opaque op, so that a compiled decode step
    (`cache_implementation="static"`) calls it where inductor would emit BLAS calls."""
    if not hasattr(torch.library, "custom_op"):  # torch < 2.4: compiled steps use BLAS
        return None

    @torch.library.custom_op("gpt2kit::gemv", mutates_args=())
    def gemv_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return gemv(x, weight, bias)

    @gemv_op.register_fake
    def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return x.new_empty(*x.shape[:-1], weight.shape[0])

    return gemv_op


gemv_op = _register_op()


# -- LoRA (issue 20): a mixed-adapter batch's per-row low-rank updates --------------------
def _bound(name: str, argtypes: list, restype: Any) -> Any:
    """The loaded library's function `name`, its argtypes and restype set on first use
    (for the kernels bound outside `load`). Call only after `load()` returned the library."""
    lib = _lib
    assert lib is not None
    fn = getattr(lib, name)
    if fn.argtypes is None:
        fn.argtypes, fn.restype = argtypes, restype
    return fn


# (kept at the end, apart from the product kernels' bindings; its argtypes are set on first
# use, so `load()` is unchanged)
def lora_delta(
    x: torch.Tensor,
    a_cat: torch.Tensor,
    b_cat_t: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    y: torch.Tensor,
) -> torch.Tensor:
    """`y[t] += (x[t] @ a_cat[lo[b]:hi[b]].T) @ b_cat_t[lo[b]:hi[b]]` for each token `t` of
    batch row `b`, in place (`kernels.c`: only each row's own adapter is computed).

    `x [n, T, in]` and `y [n, T, out]` fp32 contiguous CPU; `a_cat [R, in]`, `b_cat_t [R,
    out]` fp32 contiguous; `lo`, `hi` int32 `[n]`. Call only after `load()` returned the
    library."""
    args = [ctypes.c_void_p] * 6 + [ctypes.c_int64] * 4 + [ctypes.c_int]
    fn = _bound("gpt2kit_lora_delta_f32", args, None)
    n, in_features, out_features = lo.shape[0], a_cat.shape[1], b_cat_t.shape[1]
    tokens = x.numel() // (n * in_features)
    assert x.is_contiguous() and y.is_contiguous() and y.numel() == n * tokens * out_features
    assert a_cat.is_contiguous() and b_cat_t.is_contiguous()
    assert lo.dtype == hi.dtype == torch.int32 and lo.is_contiguous() and hi.is_contiguous()
    ptrs = (x, a_cat, b_cat_t, lo, hi, y)
    fn(*(t.data_ptr() for t in ptrs), n, tokens, in_features, out_features, torch.get_num_threads())
    return y


# -- selection over the vocabulary (kernels.c, "Selection"): generation's greedy pick and
# top-k draw (bound on first use, `_bound`).
def _selectable(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 2
        and x.shape[-1] > 0
        and load() is not None
    )


def argmax_rows(x: torch.Tensor) -> torch.Tensor:
    """`x.argmax(-1)` for `x [rows, n]`: the first maximum's index; the native pass for
    fp32 on CPU (~10x PyTorch's at [8, 50257]), PyTorch's elsewhere or for a row with NaN."""
    if not _selectable(x):
        return x.argmax(-1)
    args = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    fn = _bound("gpt2kit_argmax_rows", args, ctypes.c_int)
    x = x.contiguous()
    out = torch.empty(x.shape[0], dtype=torch.int64)
    if fn(x.data_ptr(), x.shape[0], x.shape[1], out.data_ptr()):
        return out
    return x.argmax(-1)


def topk_rows(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`x.topk(k)` for `x [rows, n]` (values sorted descending, equal values by ascending
    index): the native selection for fp32 on CPU, PyTorch's elsewhere, for a row with NaN
    or for k outside 1..n."""
    if not _selectable(x) or not 0 < k <= x.shape[-1]:
        return x.topk(k)
    args = [ctypes.c_void_p] + [ctypes.c_int64] * 3 + [ctypes.c_void_p] * 2 + [ctypes.c_int]
    fn = _bound("gpt2kit_topk_rows", args, ctypes.c_int)
    x = x.contiguous()
    values = torch.empty(x.shape[0], k)
    index = torch.empty(x.shape[0], k, dtype=torch.int64)
    ptrs = (x.data_ptr(), x.shape[0], x.shape[1], k, values.data_ptr(), index.data_ptr())
    if fn(*ptrs, torch.get_num_threads()):
        return values, index
    return x.topk(k)


def mask_below_rows(x: torch.Tensor, thr: torch.Tensor, fill: float) -> torch.Tensor:
    """`x.masked_fill(x < thr, fill)` for `x [rows, n]` and `thr [rows, 1]`: one native pass
    for fp32 on CPU (PyTorch's takes two and a mask), PyTorch's elsewhere."""
    if not _selectable(x) or thr.dtype != torch.float32 or thr.numel() != x.shape[0]:
        return x.masked_fill(x < thr, fill)
    args = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    fn = _bound(
        "gpt2kit_mask_below_rows", args + [ctypes.c_float, ctypes.c_void_p, ctypes.c_int], None
    )
    x, thr = x.contiguous(), thr.contiguous()
    out = torch.empty_like(x)
    ptrs = (x.data_ptr(), x.shape[0], x.shape[1], thr.data_ptr(), fill, out.data_ptr())
    fn(*ptrs, torch.get_num_threads())
    return out


# -- dropout (kernels.c, "Dropout"): training's masks, drawn as PyTorch draws them --------
def dropout_applies(x: torch.Tensor, p: float) -> bool:
    """Whether `dropout(x, p)` runs natively: fp32 contiguous CPU, 0 < p < 1, the kernels
    loaded, not inside `torch.compile` (where the ctypes call would break the graph)."""
    return (
        0.0 < p < 1.0
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.is_contiguous()
        and not torch.compiler.is_compiling()
        and load() is not None
    )


def dropout_scale(p: float) -> float:
    """What a kept element is multiplied by: PyTorch divides the fp32 0/1 noise by 1 - p."""
    return float(torch.tensor(1.0) / torch.tensor(1.0 - p))


def dropout(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor] | None:
    """`(F.dropout(x, p, True), keep_mask uint8)`, bit for bit, advancing the default CPU
    generator exactly as `F.dropout` would; None (generator untouched) where the state
    cannot be read. Only where `dropout_applies(x, p)`."""
    args = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_float]
    fn = _bound("gpt2kit_dropout_f32", args + [ctypes.c_void_p] * 3, ctypes.c_int)
    state = torch.get_rng_state()
    y = torch.empty_like(x)
    mask = torch.empty(x.shape, dtype=torch.uint8)
    keep = 1.0 - p
    if not fn(
        state.data_ptr(),
        x.numel(),
        keep,
        dropout_scale(p),
        x.data_ptr(),
        y.data_ptr(),
        mask.data_ptr(),
    ):
        return None
    torch.set_rng_state(state)
    return y, mask


def dropout_backward(dy: torch.Tensor, mask: torch.Tensor, p: float) -> torch.Tensor:
    """`dy * noise` for the noise `dropout` drew (`mask` its keep mask), as PyTorch's."""
    args = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_float, ctypes.c_int64, ctypes.c_void_p]
    fn = _bound("gpt2kit_dropout_backward_f32", args + [ctypes.c_int], None)
    if dy.dtype != torch.float32 or dy.device.type != "cpu" or dy.shape != mask.shape:
        return dy * (mask.to(dy.dtype) * dropout_scale(p))
    dy = dy.contiguous()
    dx = torch.empty_like(dy)
    fn(
        dy.data_ptr(),
        mask.data_ptr(),
        dropout_scale(p),
        dy.numel(),
        dx.data_ptr(),
        torch.get_num_threads(),
    )
    return dx
