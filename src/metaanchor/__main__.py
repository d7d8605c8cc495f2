"""``python -m metaanchor`` (and ``torchrun -m metaanchor train ...``)."""

import sys

from metaanchor.cli import main

sys.exit(main())
