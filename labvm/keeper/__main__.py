"""python -m labvm.keeper PROFILE LOCAL_PORT REMOTE_PORT RUN_DIR SSH_CONFIG ALIAS HOSTS"""

import sys

from .core import main

sys.exit(main(sys.argv[1:]))
