import sys

from iconet.cli import main

sys.exit(main())
