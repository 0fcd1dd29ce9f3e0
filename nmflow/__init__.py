"""nmflow: normative modelling of Yeo-network functional connectivity (a BIDS-App)."""

import os

os.environ.setdefault("NIPYPE_NO_ET", "1")

__version__ = "0.1.0"
