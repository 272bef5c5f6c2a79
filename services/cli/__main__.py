import sys

from services.cli.persd import main

sys.exit(main())
