import sys

from pipeline.apps import main

sys.exit(main())
