"""Looking at retrieval: ``lab`` (one query, every source and fusion side by side), ``projection`` (2-D maps),
``qrels`` (labelled queries: parsing and item names), ``evaluate`` (ranx metrics and tests), ``trec``
(TREC run files), ``bridge`` (linear maps between spaces)."""
