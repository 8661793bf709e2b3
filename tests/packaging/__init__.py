"""Tests of what gitopsd ships: the container image, the systemd units."""
