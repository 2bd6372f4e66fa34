"""`python -m phototag` is the `phototag` command."""

import sys

from phototag.cli import main

sys.exit(main())
