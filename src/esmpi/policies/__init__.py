"""Policies: flat float32 theta -> action, built from ``[policy]`` and injected into objectives."""
