"""Learning the user's own keywords (TagProp, 2PKNN) and the benchmark protocol."""
