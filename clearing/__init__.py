"""Money settlement: batches, pollueur-payeur allocation, statements, expiry and credit notes,
payments (Stripe collection from financers, SEPA credit transfers to sites) and the audit.

Modules: `batches` (closing a batch), `statements` (reading them), `export` (CSV, PDF),
`payments` (Stripe, webhooks, bank transfers, SEPA files), `expiry` (expired cheques, credit
notes), `journal` (the ledger entries clearing writes), `audit`, `invoices` (Factur-X invoices
and credit notes, `invoices_facturx`, `invoices_audit`), `bank` (camt.053/054 reconciliation),
`chorus` (Chorus Pro client); the pure parts are `allocation`, `sepa` and `stripe_gateway`.

How the money moves through the journal
=======================================

The journal keeps pass_'s convention: an entry "A → B" of v cents posts −v on A and +v on B,
so the scheme's funds and what is owed to sites or earned by the operator carry positive
balances, while what others owe us (commitments not yet called, receivables) and the cash
we hold (`bank`) carry negative ones. Every entry sums to zero.

=====================  ==============================================  =====================
key                    postings                                        written by
=====================  ==============================================  =====================
commit:<p>:<f>         financer:<f>:commitment −C, programme:<p>:available +C   pass_ (programme)
activate:<booklet>     programme:<p>:available −v, programme:<p>:outstanding +v pass_ (issuance)
redeem:<r>             programme:<p>:outstanding −v, site:<s>:payable +v        pass_ (redemption)
batch:<b>:site:<s>     site:<s>:payable −gross, site:<s>:payout +net,           clearing
                       operator:fees +commission
batch:<b>:financer:<f> financer:<f>:commitment +allocated,                      clearing
                       financer:<f>:receivable −(allocated + fee),
                       operator:fees +fee
paid:<statement>       financer:  financer:<f>:receivable +x, bank −x           clearing
                       site:      site:<s>:payout −x, bank +x                   clearing
expire:<p>:<day>       programme:<p>:outstanding −v, programme:<p>:available +v clearing
credit:<p>:<f>         programme:<p>:available −u, financer:<f>:commitment +u   clearing
invoice:<i>:vat        financer:<f>:vat_receivable −vat, operator:vat +vat      clearing (invoices)
invoice:<i>:paid       financer:<f>:receivable +basis,                          clearing (bank)
                       financer:<f>:vat_receivable +vat, bank −(basis + vat)
=====================  ==============================================  =====================

Invoices (issue 14, `invoices`, `invoices_facturx`, `bank`, `chorus`, `invoices_audit`): a
financer statement is billed by one invoice per programme whose amounts before VAT sum to the
statement's net; VAT (on the fee line) is added on top and kept off `receivable`, which keeps
mirroring the statements. A statement is paid either as a whole (`paid:<statement>`: Stripe, a
transfer recorded by hand — its invoices are then marked paid without entries of their own) or
invoice by invoice from the bank statement (`invoice:<i>:paid`; the statement is marked paid,
with no `paid:` entry, when its last invoice is).

What this guarantees, and what the audit re-checks:

- per closed batch, Σ site gross (−Σ of the `site:*:payable` postings of its `batch:` entries)
  = Σ values of its redemptions = Σ financer allocations (Σ of the `financer:*:commitment`
  postings), because the same redemptions feed both sides;
- a site's `payable` balance is the value of its live redemptions not yet in a batch, its
  `payout` balance what it has been cleared and not yet paid;
- a financer's `commitment` balance is −(commitment − allocated − credited): its remaining
  commitment; when a programme ends, the credit note brings it (and the programme's
  `available`) to zero;
- `operator:fees` = Σ site commissions + Σ financer fees; `bank` = −(cash received − cash paid).

What is stored per batch, and why
=================================

- `redemption.batch_id` marks each cleared redemption (the reversal rule reads it);
- `allocation_pattern` holds the few hundred distinct ways the batch charged a redemption
  (financer parts of a value, family and programme under given commitments) and `allocation`
  one narrow row per redemption naming its pattern: per-cheque traceability for a million
  redemptions in a million 3-column rows written by COPY (a row per financer part would be
  about 2.7 million; per-redemption storage was kept because the audit compares it, cheque by
  cheque, with its own replay of the rule);
- `statement` per site and per financer, and `statement_line` for financers (by programme,
  démarche family and site commune) and credit notes; site lines are the redemptions.

`bench/clearing.py` measures closing 100,000 and 1,000,000 redemptions; most of the time of a
national batch is PostgreSQL marking the redemptions (a new version of each row and its index
entries), which runs while Python allocates.
"""
