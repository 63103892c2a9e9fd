"""Entry point: ``python -m benchmarks`` runs `benchmarks.run.main`."""

import sys

from .run import main

sys.exit(main())
