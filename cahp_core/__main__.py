"""``python -m cahp_core ...``: the ``cahp`` command."""

import sys

from cahp_core.cli import main

if __name__ == "__main__":
    sys.exit(main())
