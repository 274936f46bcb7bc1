"""``python -m pyconvnet``: the same as the ``pyconvnet`` command."""
import sys

from .cli import main

sys.exit(main())
