"""`python -m understanding.cli` is the CLI too."""

from understanding.cli import main

raise SystemExit(main())
