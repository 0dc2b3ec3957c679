import sys

from model_runtime.cli import main

sys.exit(main())
