"""`python -m xclip_hf.cli ...` is `xclip-hf ...`."""

import sys

from . import entry

sys.exit(entry())
