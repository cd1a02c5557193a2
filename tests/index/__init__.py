"""Tests of the `index` package (ingestion, storage, search); they use a stand-in encoder unless noted."""
