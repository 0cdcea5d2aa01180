"""Payment method per financer (issue 14), against localstripe: a private-law financer with a
SEPA mandate is still debited and its invoices are paid with its statement; a public body with
a mandate is not debited — it pays its invoices by transfer."""

from __future__ import annotations

from sqlalchemy import text

from clearing import payments
from clearing.batches import close_batch
from kit.clock import utcnow
from tests.clearing import test_payments
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)
from tests.clearing.test_payments import GOOD_IBAN, _until

keyring = test_payments.keyring
live_app = test_payments.live_app
gateway = test_payments.gateway
hooks = test_payments.hooks


async def test_a_private_financer_is_debited_a_public_one_pays_by_transfer(
        sessionmaker, keyring, gateway, live_app, hooks):
    async with sessionmaker() as session:
        scheme = await make_scheme(session, keyring)
        public, private = scheme.financers
        await session.execute(text(
            "UPDATE organisation SET financer_category = CASE WHEN id = :p THEN 'departement'"
            " ELSE 'organisme' END WHERE id = ANY(:ids)"),
            {"p": public.id, "ids": [public.id, private.id]})
        for financer in scheme.financers:
            mandate = await gateway.create_customer_with_sepa_mandate(
                name=financer.name, email=None, iban=GOOD_IBAN)
            await payments.attach_mandate(session, financer_id=financer.id,
                                          customer_id=mandate.customer_id,
                                          payment_method_id=mandate.payment_method_id)
        site = await make_site(session)
        for i, cheque in enumerate(await issue_cheques(session, scheme, 2)):
            await redeem(session, scheme, site, cheque, at=paris(2024, 1, 9, 10, i))
        batch, _ = await close_batch(session, cutoff=unique_cutoff(), now=utcnow())
        statements = dict((await session.execute(text(
            "SELECT organisation_id, id FROM statement WHERE batch_id = :b "
            "AND kind = 'financer'"), {"b": batch.id})).all())
        methods = dict((await session.execute(text(
            "SELECT financer_id, payment_method FROM invoice WHERE batch_id = :b"),
            {"b": batch.id})).all())
        await session.commit()
    assert methods == {public.id: "transfer", private.id: "stripe_sepa"}

    done = await payments.collect(sessionmaker, gateway, batch_id=batch.id)

    assert [statement for statement, _intent in done] == [statements[private.id]]
    await _until(sessionmaker, "SELECT status FROM statement WHERE id = :id",
                 {"id": statements[private.id]}, "paid")
    await _until(sessionmaker, "SELECT status FROM invoice WHERE statement_id = :id",
                 {"id": statements[private.id]}, "paid")
    async with sessionmaker() as session:
        status = (await session.execute(text(
            "SELECT status FROM invoice WHERE statement_id = :s"),
            {"s": statements[public.id]})).scalar()
    assert status == "issued"  # waits for its transfer
