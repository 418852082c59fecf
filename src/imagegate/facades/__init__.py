"""Other wire formats served on the same tasks, keys and billing: pure translations between
their requests, answers and errors and imagegate's native tasks."""
