"""Model files: format detection, safe loading, the Keras 3 bridge and inspection."""
