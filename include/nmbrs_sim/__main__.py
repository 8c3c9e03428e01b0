"""`python -m nmbrs_sim` is `nmbrs-sim`."""

import sys

from nmbrs_sim.cli import main

sys.exit(main())
