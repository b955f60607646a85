"""`python -m nutrition_db ...`: see nutrition_db.cli."""
import sys

from nutrition_db.cli import main

sys.exit(main())
