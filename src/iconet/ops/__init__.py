"""Pure tensor operations shared by data code and models (no files, no modules)."""
