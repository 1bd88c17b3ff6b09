import sys

from qilbee_cli.main import main

sys.exit(main())
