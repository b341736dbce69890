"""Images in, pictures out: decoding inputs, rendering maps to PNG, the colour map."""
