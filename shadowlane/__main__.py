import sys

from shadowlane.cli import main

sys.exit(main())
