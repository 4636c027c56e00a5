"""`python -m gpt2kit ...` runs the command line (e.g. under `torchrun -m gpt2kit train ...`)."""

from .cli import main

raise SystemExit(main())
