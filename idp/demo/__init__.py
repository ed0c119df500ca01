"""What `idp demo` and the test suite run locally: a throw-away AD domain controller, a webmail SP, the mail API
emulator."""
