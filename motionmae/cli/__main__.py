"""``python -m motionmae.cli`` runs the command line, as ``python -m motionmae`` does."""

import sys

from motionmae.cli import main

sys.exit(main())
