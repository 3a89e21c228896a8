"""`python -m higen_core.shapes --out DIR --videos N --images N`: write a dataset of the shapes world."""

import sys

from .world import main

sys.exit(main())
