"""Serving: the embedded Triton launcher and the Triton Python-backend models."""
