"""`python -m serve`: see serve.cli."""
from serve.cli import main

raise SystemExit(main())
