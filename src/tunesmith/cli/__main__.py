"""``python -m tunesmith.cli ...`` (what torchrun / accelerate launch run) is the ``tunesmith`` command."""

import sys

from tunesmith.cli import main

sys.exit(main())
