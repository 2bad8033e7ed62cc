"""Pure document logic: language ID, normalization, quality rules. No engine imports here."""
