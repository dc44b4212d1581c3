"""``python -m depsim_assets.cli``: the same as the ``depsim`` console script."""

import sys

from depsim_assets.cli import main

sys.exit(main())
