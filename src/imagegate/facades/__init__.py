"""Other wire formats served on the same tasks, keys and billing: pure translation."""
