"""Strategies: pure ``init / bases / ask / tell`` over the shared candidate table (DESIGN.md)."""
