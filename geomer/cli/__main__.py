import sys

from geomer.cli import main

sys.exit(main())
