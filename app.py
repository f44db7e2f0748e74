"""medattn server: `streamlit run app.py` serves the workbench (workbench.py, the script each
browser session runs) behind medattn's upload gate (medattn.ui.upload_gate): a file is taken
only for an admin with an uploader on screen, within that uploader's bounds, streamed to disk
rather than held in memory. From its start it warms up for the first visitor
(medattn.ui.warmup: imports, the opening dataset and checkpoints; /_medattn/ready says when done). Settings: .streamlit/config.toml and the flags of `streamlit run`
(`--server.address 0.0.0.0` to listen beyond this machine); environment: see workbench.py."""

# First: medattn sets the thread policy (medattn.threads) before anything imports torch.
import medattn  # noqa: F401

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from medattn.ui.upload_gate import UploadGate  # noqa: E402
from medattn.ui.warmup import ROUTES, lifespan  # noqa: E402

app = st.App("workbench.py", middleware=[Middleware(UploadGate)], lifespan=lifespan, routes=ROUTES)
