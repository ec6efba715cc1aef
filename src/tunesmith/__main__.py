"""``python -m tunesmith ...`` is the ``tunesmith`` command."""

import sys

from tunesmith.cli import main

sys.exit(main())
