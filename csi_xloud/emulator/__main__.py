"""python -m csi_xloud.emulator."""

import sys

from csi_xloud.emulator.cli import main

sys.exit(main())
