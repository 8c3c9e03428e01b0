import sys

from l1nda_sync.cli import main

sys.exit(main())
