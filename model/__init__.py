"""smapx science core: grids, data sources, the LSTM, inference, the product cube, evaluation."""

import warnings

# Zarr v3 stores here carry consolidated metadata on purpose: it makes opening over HTTP one request.
warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
