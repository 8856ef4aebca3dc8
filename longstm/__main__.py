import sys

from longstm.cli import main

sys.exit(main())
