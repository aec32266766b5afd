"""``python -m motionmae`` (and ``torchrun -m motionmae``) run the command line."""

import sys

from motionmae.cli import main

sys.exit(main())
