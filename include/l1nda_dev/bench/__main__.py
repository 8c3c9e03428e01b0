import sys

from l1nda_dev.bench.run import main

sys.exit(main())
