import sys

from mergesmith.cli.main import main

sys.exit(main())
