"""The built-in toy MUSDB: synthetic songs in exactly the MUSDB18 format, apart from the science."""
