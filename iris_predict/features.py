"""The four iris measurements: their names, tutorial aliases and units.

This is the one place that knows the feature order the model was trained on;
training, request parsing and the metadata endpoint all read it from here.
"""

# (name, tutorial alias, unit), in the column order of sklearn's iris data.
FEATURES = (
    ("sepal_length", "sl", "cm"),
    ("sepal_width", "sw", "cm"),
    ("petal_length", "pl", "cm"),
    ("petal_width", "pw", "cm"),
)
NAMES = tuple(name for name, _, _ in FEATURES)
ALIASES = tuple(alias for _, alias, _ in FEATURES)

# Any real flower measures more than 0 and less than a metre; anything else is
# a client bug, not a flower to extrapolate to.
MIN_VALUE = 0.0
MAX_VALUE = 100.0
