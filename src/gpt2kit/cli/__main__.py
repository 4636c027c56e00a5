"""`python -m gpt2kit.cli ...` runs the command line, as `gpt2kit ...` does."""

from . import main

raise SystemExit(main())
