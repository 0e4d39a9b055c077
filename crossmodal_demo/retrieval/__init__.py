"""A query → ranked lists → hits: ``query`` (all query validation), ``library`` (a collection opened with its
encoders), ``search`` (SearchService), ``sources`` (one ranked list per space × channel), ``fusion`` (ranx, and the same without it), ``calibration`` (match strength)."""
