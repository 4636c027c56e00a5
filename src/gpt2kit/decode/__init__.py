"""CPU decoding acceleration, behind one seam: `cpu_decoder(model, rows)` builds a
`CPUDecoder` that runs a model's decoding steps (native kernels, the decoder's own weight
copies and oneDNN-packed weights, the batch-1 step plan) while the model stays a plain
PyTorch module (the C kernels themselves are `gpt2kit.native`). `generate` and the
server's batcher build it; see `decode/decoder.py`.

- `weights.py`: the decoder's weight copies (arena, column-major, packed) and their checks;
- `plan.py`: when a batch-1 step may run as one native call, and its pointer table;
- `packed.py`: oneDNN-packed weights;
- `decoder.py`: `CPUDecoder`, `cpu_decoder`, `disabled`, `release`.
"""

import sys

from .. import native
from .decoder import CPUDecoder, cpu_decoder, disabled, held_bytes, release

# The C kernels moved down to `gpt2kit.native` (training's dropout uses them too, and `nn`
# sits below `decode`); `gpt2kit.decode.native` stays importable as that same module.
sys.modules[__name__ + ".native"] = native

__all__ = ["CPUDecoder", "cpu_decoder", "disabled", "held_bytes", "release"]
