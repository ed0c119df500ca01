"""Flask blueprints and pages. Thin: they read the request, call the sign-in pipeline and services, render."""
