"""`python -m xclip_hf.cli ...` is `xclip-hf ...`."""

import sys

from . import main

sys.exit(main())
