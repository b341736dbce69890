import sys

from saliency_client.cli import main

sys.exit(main())
