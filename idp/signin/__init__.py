"""The sign-in: one pipeline of named steps over one context (DESIGN.md §2).

    context.py   what a sign-in carries from step to step, and the outcomes that end it
    steps.py     the steps: CheckSp, ReuseSsoSession, RecheckPerson, Authenticate, DecideAccess, Provision,
                 SignInToAlimail (Alibaba Mail direct: its logon API's one-time login URL instead of a SAML
                 response), IssueNameId, ReleaseAttributes, Respond
    sessions.py  the index of live SSO sessions every node shares: the console's list, revocation
    pipeline.py  their order (build_steps), the runner and its audit row, the console's preview
    throttle.py  password-guessing limits, asked by Authenticate

Front ends (idp.web) build a context and run the pipeline; they never repeat a rule the steps hold.
This package sits above saml/, sps/, directory/, provisioning/ and access; nothing below imports it.
"""
