"""The SP registry: which service providers we answer, their metadata and their policy."""
