"""``python -m mlloss``: the same program as the ``mlloss`` console script."""

import sys

from mlloss.cli import main

sys.exit(main())
