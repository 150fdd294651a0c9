import sys

from karyo_gui.cli import main

sys.exit(main())
