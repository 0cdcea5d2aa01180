"""Browser tests: a real uvicorn server on the suite's database and Debian's Chromium.

The server runs in a thread on a loopback socket bound here (so it accepts connections as soon
as it exists: nothing to poll). Playwright drives /usr/bin/chromium — installed with apt-get when
missing — and never downloads a browser of its own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pass_.enums import Role

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

from playwright.async_api import Browser, BrowserContext, Page, async_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PHONE = {"width": 360, "height": 780}
T = TypeVar("T")


def ensure_chromium() -> str:
    """Debian's Chromium, installed on first use (the test machine may not have it yet)."""
    if not Path(CHROMIUM).exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    return CHROMIUM


def ensure_node_modules() -> None:
    """The pages need the npm assets (DSFR, jsQR); `make test` installs them, plain pytest too."""
    if AXE.exists() and (ROOT / "node_modules" / "jsqr").exists():
        return
    npm = shutil.which("npm")
    assert npm, "npm est nécessaire pour installer les ressources des pages (package.json)"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], check=True, cwd=ROOT)


@pytest.fixture(scope="session")
def live_server(database_url: str, settings: Any) -> Iterator[str]:
    """Base URL of the real application served by uvicorn on a free loopback port."""
    import uvicorn

    from api.app import create_app

    ensure_node_modules()
    application = create_app(settings, database_url=database_url, run_sealer=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(application, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)
    sock.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = ensure_chromium()
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        await instance.close()


@pytest.fixture
async def context(browser: Browser, live_server: str) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(base_url=live_server, locale="fr-FR", viewport=PHONE)
    ctx.set_default_timeout(15_000)
    yield ctx
    await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


@pytest.fixture
def db(sessionmaker: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    """Run `work(session)` in a committed transaction (test data and checks on the server's
    database)."""

    async def run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async with sessionmaker() as session:
            async with session.begin():
                return await work(session)

    return run


async def login(page: Page, email: str, password: str) -> None:
    await page.goto("/connexion")
    await page.get_by_label("Adresse e-mail").fill(email)
    await page.get_by_label("Mot de passe").fill(password)
    await page.get_by_role("button", name="Se connecter").click()
    await page.wait_for_url(lambda url: "/connexion" not in url)


async def logout(page: Page) -> None:
    buttons = page.get_by_role("button", name="Se déconnecter")
    if not await buttons.filter(visible=True).count():  # phone width: the menu holds it
        await page.get_by_role("button", name="Menu").click()
    await buttons.filter(visible=True).first.click()
    await page.wait_for_url("**/connexion?raison=deconnexion")


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """Serious and critical accessibility violations found by axe-core on the current page."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


DEMO_SITE_MEDIATOR = "mediatrice@mediatheque-admiville.fr"


@pytest.fixture
def issue_cheques(db, settings):  # type: ignore[no-untyped-def]
    """Issue a booklet of the demo programme to a new beneficiary; returns its cheques."""
    import uuid

    from sqlalchemy import select

    from api.seed import seed_demo
    from kit.clock import utcnow
    from pass_ import beneficiaries, issuance
    from pass_.models import AppUser, Programme
    from pass_.programmes import DEMO_PROGRAMME_NAME, Actor
    from pass_.schemas import BeneficiaryCreate
    from pass_.tokens import Keyring

    async def issue(size: int = 5) -> list[Any]:
        await db(seed_demo)

        async def work(session: AsyncSession) -> list[Any]:
            agent = await session.scalar(
                select(AppUser).where(AppUser.email == "agent@ccas-admiville.fr")
            )
            programme = await session.scalar(
                select(Programme).where(Programme.name == DEMO_PROGRAMME_NAME)
            )
            assert agent is not None and programme is not None
            person = await beneficiaries.create_beneficiary(
                session,
                issuer_id=agent.organisation_id,
                data=BeneficiaryCreate(reference=f"E2E-{uuid.uuid4().hex[:8]}", need_level=2),
            )
            booklet = await issuance.issue_booklet(
                session,
                keyring=Keyring.load_or_create(settings.keys_dir),
                actor=Actor(agent.id, agent.organisation_id, Role(agent.role)),
                programme_id=programme.id,  # type: ignore[arg-type]
                beneficiary_id=person.id,  # type: ignore[arg-type]
                size=size,
                now=utcnow(),
            )
            return list(booklet.cheques)

        return await db(work)

    return issue


def qr_video(text: str, path: Path, frames: int = 10) -> Path:
    """A YUV4MPEG2 video of `text` as a big QR code (quiet zone included) on a 640×480 gray
    frame, for Chromium's fake camera (`--use-file-for-fake-video-capture`)."""
    import segno

    width, height = 640, 480
    qr = segno.make(text, error="m", micro=False)
    matrix = [[bool(v) for v in row] for row in qr.matrix_iter(scale=1, border=4)]
    modules = len(matrix)
    scale = (height - 40) // modules
    side = modules * scale
    left, top = (width - side) // 2, (height - side) // 2
    luma = bytearray([200]) * (width * height)  # light gray around the code
    for y in range(side):
        row = matrix[y // scale]
        offset = (top + y) * width + left
        luma[offset : offset + side] = bytes(16 if row[x // scale] else 235 for x in range(side))
    chroma = bytes([128]) * (width // 2 * height // 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n")
            out.write(luma)
            out.write(chroma)
            out.write(chroma)
    return path


async def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    violations = await axe_violations(page)
    assert not violations, f"{page.url}: {violations}"


READABLE_AT_PHONE_WIDTH = """() => {
  const problems = [];
  const width = window.innerWidth;
  if (document.documentElement.scrollWidth > width + 1)
    problems.push(`la page déborde : ${document.documentElement.scrollWidth} px (` +
      [...document.querySelectorAll("body *")]
        .filter((e) => e.getBoundingClientRect().right > width + 1).slice(0, 4)
        .map((e) => e.tagName.toLowerCase() + "." + [...e.classList].join(".")).join(", ") +
      ")");
  for (const table of document.querySelectorAll("table")) {
    if (table.closest("[hidden], details:not([open])")) continue;
    const rect = table.getBoundingClientRect();
    const box = table.closest(".fr-table__container");
    const boxRect = box ? box.getBoundingClientRect() : { right: width, width: width };
    if (rect.width <= boxRect.width + 1) continue;  // fits (or stacked)
    const scrolls = box && ["auto", "scroll"].includes(getComputedStyle(box).overflowX);
    const caption = table.querySelector("caption");
    const shown = caption && caption.getBoundingClientRect().height > 2;
    if (!scrolls || !shown)
      problems.push(`tableau de ${Math.round(rect.width)} px sans défilement ni titre visible : ` +
                    (caption ? caption.textContent.trim() : "(sans titre)"));
    for (const cell of table.querySelectorAll("td[colspan]")) {  // an empty state, say
      const range = document.createRange();
      range.selectNodeContents(cell);
      if (range.getBoundingClientRect().right > boxRect.right + 1)
        problems.push(`texte coupé : ${cell.textContent.trim().slice(0, 60)}`);
    }
  }
  return problems;
}"""


async def assert_readable_on_a_phone(page: Page) -> None:
    """At phone width nothing overflows the page, and every table either fits (stacked rows)
    or scrolls in its own container under a visible caption (issue 16 item 13)."""
    problems = await page.evaluate(READABLE_AT_PHONE_WIDTH)
    assert not problems, f"{page.url}: {problems}"


async def count_figures(session: AsyncSession) -> None:
    """What the sealer and the rollup process of `passnum serve` do within seconds (the live
    server of these tests runs neither): seal what is pending, then count it into the
    dashboards' figures. Call through `db` before reading a dashboard."""
    from ledger.sealer import seal_pending
    from pass_.reporting import refresh_rollup

    while await seal_pending(session, limit=100_000):
        pass
    await refresh_rollup(session)
