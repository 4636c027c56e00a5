"""CPU decoding acceleration, behind one seam: `cpu_decoder(model, rows)` builds a
`CPUDecoder` that runs a model's decoding steps (native kernels, the decoder's own weight
copies and oneDNN-packed weights, the batch-1 step plan) while the model stays a plain
PyTorch module. `generate` and the server's batcher build it; see `decode/decoder.py`.

- `native/`: the C kernels (`kernels.c`) and their `ctypes` bindings;
- `weights.py`: the decoder's weight copies (arena, column-major, packed) and their checks;
- `plan.py`: when a batch-1 step may run as one native call, and its pointer table;
- `packed.py`: oneDNN-packed weights;
- `decoder.py`: `CPUDecoder`, `cpu_decoder`, `disabled`, `release`.
"""

from .decoder import CPUDecoder, cpu_decoder, disabled, held_bytes, release

__all__ = ["CPUDecoder", "cpu_decoder", "disabled", "held_bytes", "release"]
