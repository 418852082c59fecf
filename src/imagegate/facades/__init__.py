"""Translations between other image APIs' wire formats and imagegate's native tasks."""
