"""The backbone layer: `GPT2Model` and what it is built from (`backbone`, `base`, `cache`,
`outputs`, `activations`).

Below `gpt2kit.generation` and `gpt2kit.decode` (they import only this layer) and below
the task heads in `gpt2kit.models` (which import generation); it imports only `config`,
`config_checks`, `checkpoint` and `hub`. See docs/architecture.md.
"""
