"""One module per `idp` sub-command family; each exposes a click command or group."""
