"""Quantization at load: int8 (per output channel) and int4 (group-wise) weights; products
of more than 32 rows (prompts) also round their input, as `QuantizationConfig.input_activations`
says (int8: dynamic per-token int8, an int8 GEMM; int4: bf16).

`from_pretrained(path, quantization="int8" | "int4")` (or `quantization_config=`) loads the
model in floating point and replaces every linear layer (the LM head included) with a
`QuantizedLinear`; a token embedding tied to the LM head becomes a `QuantizedEmbedding`
that reads the head's quantized matrix. CPU decoding (`gpt2kit.decode`) reads the int8 /
int4 bytes directly with native kernels; other paths dequantize blocks of rows and
multiply. `gpt2kit convert SRC DST --quantize int8|int4` writes a compressed-tensors
folder that loads quantized. See docs/quantization.md.
"""

from .config import QuantizationConfig, resolve
from .modules import QuantizedEmbedding, QuantizedLinear, is_quantized, quantize_model, weight_bytes

__all__ = [
    "QuantizationConfig",
    "QuantizedEmbedding",
    "QuantizedLinear",
    "is_quantized",
    "quantize_model",
    "resolve",
    "weight_bytes",
]
