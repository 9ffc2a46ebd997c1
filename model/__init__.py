"""smapx science core: grids, data sources, the LSTM, inference, the product cube, evaluation."""

import warnings

# Zarr v3 stores here carry consolidated metadata on purpose: opening over HTTP is one request.
warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
