"""Generic append-only double-entry journal on PostgreSQL; knows nothing of vouchers.

Use it through `ledger.service` (post, post_many, reverse, balances), `ledger.sealer`
(hash chain) and `ledger.audit` (independent checks); errors are in `ledger.errors`.
"""
