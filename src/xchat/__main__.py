"""``python -m xchat``: the same as the ``xchat`` command."""

import sys

from xchat.cli.main import main

sys.exit(main())
