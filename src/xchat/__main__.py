"""``python -m xchat``: the same as the ``xchat`` command."""

import sys

from xchat.cli.main import main

if __name__ == "__main__":  # not when multiprocessing re-imports this module in a child
    sys.exit(main())
