"""`python -m understanding` is the CLI."""

from understanding.cli import main

raise SystemExit(main())
