import sys

from l1nda_sync.bench.run import main

sys.exit(main())
