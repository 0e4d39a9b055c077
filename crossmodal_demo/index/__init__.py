"""Vectors → a durable collection: ``schema`` (SQLite schema, items, names, atomic writes), ``store``
(Collection: SQLite truth + FAISS partitions per space × channel × modality), ``faiss_index`` (index kind
by size, GPU search copies), ``pipeline`` (batched decode → encode → one transaction per batch)."""
