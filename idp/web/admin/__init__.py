"""The admin console (/admin): one module per page, all on one blueprint behind one guard (guard.py).

Pages call the same services the CLI calls; nothing here decides anything the CLI could not."""

from __future__ import annotations

from flask import Flask, current_app

from idp.web.admin import (
    activity,  # noqa: F401  (registers its routes on import)
    alimail,  # noqa: F401  (registers its routes on import)
    dashboard,
    directory,  # noqa: F401  (registers its routes on import)
    keys,  # noqa: F401  (registers its routes on import)
    mfa,  # noqa: F401  (registers its routes on import)
    oidc_clients,  # noqa: F401  (registers its routes on import)
    policy,  # noqa: F401  (registers its routes on import)
    provisioning,  # noqa: F401  (registers its routes on import)
    sessions,  # noqa: F401  (registers its routes on import)
    sps,  # noqa: F401  (registers its routes on import)
)
from idp.web.admin.blueprint import bp


def register(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.context_processor
    def _nav() -> dict:
        def admin_nav() -> list[tuple[str, str]]:
            return [(endpoint, label) for endpoint, label in dashboard.NAV if endpoint in current_app.view_functions]

        return {"admin_nav": admin_nav}
