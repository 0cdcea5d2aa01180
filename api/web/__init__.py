"""Server-rendered pages (Jinja2 + DSFR) for agents, mediators, financers and the operator.

Every module here that exposes `router` is included by `api.app.create_app`; the helpers
(templating, csrf, session, forms, charts) expose none. Pages call the same service functions
as the JSON API and hold no business rule.
"""
