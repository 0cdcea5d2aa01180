"""`passnum invoices`, `invoice-pdf`, `import-bank-statement` (twice), `overdue`,
`set-participation` and `chorus-deposit` without configuration, on the test database."""

from __future__ import annotations

import facturx
import pytest
from sqlalchemy import text

from pass_.tokens import Keyring
from tests.clearing import test_cli
from tests.clearing.factories import (
    issue_cheques,
    make_scheme,
    make_site,
    paris,
    redeem,
    unique_cutoff,
)
from tests.clearing.test_bank import camt054
from tests.clearing.test_cli import _passnum

runner = test_cli.runner  # the CLI on the test database (fixture)


@pytest.fixture(scope="module")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> Keyring:
    return Keyring.load_or_create(tmp_path_factory.mktemp("invoice-cli") / "keys")


async def test_the_operator_does_it_all_from_the_command_line(runner, sessionmaker, keyring,
                                                              tmp_path):
    async with sessionmaker() as session:
        scheme = await make_scheme(session, keyring)
        site = await make_site(session)
        for i, cheque in enumerate(await issue_cheques(session, scheme, 2)):
            await redeem(session, scheme, site, cheque, at=paris(2024, 1, 16, 9, i))
        await session.commit()
    closed = await _passnum(runner, "close-batch", "--cutoff", unique_cutoff().isoformat())
    assert closed.exit_code == 0, closed.output
    async with sessionmaker() as session:
        batch = (await session.execute(text("SELECT max(id) FROM batch"))).scalar()
        number, reference, total, invoice_id = (await session.execute(text(
            "SELECT number, payment_reference, total_cents, id FROM invoice "
            "WHERE batch_id = :b AND financer_id = :f"),
            {"b": batch, "f": scheme.financer_id(0)})).one()

    listed = await _passnum(runner, "invoices", "--batch", str(batch))
    assert listed.exit_code == 0 and number in listed.output and reference in listed.output

    out = tmp_path / "facture.pdf"
    written = await _passnum(runner, "invoice-pdf", number, "--out", str(out))
    assert written.exit_code == 0, written.output
    _name, xml = facturx.get_xml_from_pdf(out.read_bytes(), check_xsd=True)
    assert number.encode() in xml

    camt = tmp_path / "camt054.xml"
    camt.write_bytes(camt054([{"amount": f"{total // 100}.{total % 100:02d}",
                               "ref": reference}], message_id=f"CLI-{invoice_id}"))
    first = await _passnum(runner, "import-bank-statement", str(camt))
    assert first.exit_code == 0 and "1 facture(s) payée(s)" in first.output, first.output
    second = await _passnum(runner, "import-bank-statement", str(camt))
    assert "déjà importé" in second.output

    late = await _passnum(runner, "overdue")
    assert late.exit_code == 0 and number not in late.output  # paid: not overdue

    refs = await _passnum(runner, "set-participation", "--programme", str(scheme.id),
                          "--financer", str(scheme.financer_id(1)), "--engagement", "EJ-9")
    assert refs.exit_code == 0 and "engagement EJ-9" in refs.output
    too_long = await _passnum(runner, "set-participation", "--programme", str(scheme.id),
                              "--financer", str(scheme.financer_id(1)),
                              "--engagement", "E" * 51)
    assert too_long.exit_code == 1

    off = await _passnum(runner, "chorus-deposit")
    assert off.exit_code == 1 and "chorus_not_configured" in off.output
