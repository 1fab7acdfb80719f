"""`python -m chaos_upstream` is the `chaos-upstream` command."""

from chaos_upstream.cli import main

raise SystemExit(main())
