"""Entry point: python -m model.data ..."""
from model.data.cli import main

raise SystemExit(main())
