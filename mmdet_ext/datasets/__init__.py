"""Dataset helpers for the mmdet adapters that need no framework import."""
