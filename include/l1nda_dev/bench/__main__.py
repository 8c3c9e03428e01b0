import sys

from l1nda_dev.bench.run import main

if "--ui-pages" in sys.argv[1:]:  # the token-health pages on 50,000 credentials instead of the sync sweeps
    from l1nda_dev.bench.ui_pages import main as ui_pages

    sys.exit(ui_pages([a for a in sys.argv[1:] if a != "--ui-pages"]))
sys.exit(main())
