-- The redemption (DESIGN.md §5), written once: every rule, in the order a mediator needs
-- them, and the writes. Installed by migration 0008_redeem_function (again by 0014, which
-- moved the territory rule into pass_in_territory, and by 0015). Every road calls it:
-- the online API and the mediator's scan page (`pass_.redemption.redeem_cheque`), the offline
-- batch (`redeem_offline`: one statement calling it once per scan), and the cheque check
-- (`check_cheque`, with p_dry_run: the same rules, nothing written).
--
-- Arguments: the cheque's serial (read by Python from the typed serial or the QR token);
-- p_token, the QR token as scanned in its canonical form (upper case), or NULL for a typed
-- serial; p_claimed_programme_id / p_claimed_value_cents, what a token *whose Ed25519
-- signature Python verified* says (only for a genuine token that is not the stored copy, e.g.
-- signed again after a key rotation), else NULL; the site, the user, the Paris day the rules
-- are judged on (the scan's day offline), the instant recorded, the service and démarche;
-- p_scanned_at for an offline scan (NULL online), with the accepted range's bounds.
--
-- Returns `refusal` NULL when redeemed (or, in a dry run, redeemable), else a stable code:
--   invalid_scanned_at, site_not_qualified, cheque_not_found, invalid_token,
--   site_not_eligible, cheque_already_redeemed, cheque_cancelled, cheque_expired,
--   cheque_not_active, cheque_not_yet_valid
-- with the cheque's facts (for the answer and the check) and, for cheque_already_redeemed,
-- when (`redeemed_at`) and, only if it was this very site, which redemption
-- (`redeemed_here`, `redemption_id`: an offline double scan). A refusal writes nothing.
--
-- Exactly once: the claim is one conditional UPDATE (`… WHERE id = … AND status = 'active'`);
-- a concurrent claim waiting on the row lock re-evaluates it once the first commits, finds
-- 'redeemed' and claims nothing; the partial unique index uq_redemption_live_cheque (one live
-- redemption per cheque) backs it. A claim that finds nothing reads the cheque again (a
-- reversal may have made it active meanwhile) and decides anew, three times at most.
-- The territory rule, written once: is a commune (INSEE code) in a programme's territory — one
-- of its communes (5 characters), or in one of its départements (a shorter code: 35, 2A, 974,
-- a prefix)? `pass_redeem` judges a scan's site with it, and Python's reads of "where a
-- programme's cheques are accepted" call it too (pass_.programmes, pass_.booklet_print,
-- pass_.mon_pass): the site lists, the booklet's cover and the redemption cannot disagree.
CREATE OR REPLACE FUNCTION pass_in_territory(p_commune text, p_territory text[])
RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
-- A code shorter than 5 characters is a prefix of the commune: one of its first 0 to 4
-- characters. One expression with no subquery, so that PostgreSQL inlines the function where
-- it is called (an EXISTS over unnest made each call a query of its own).
SELECT p_commune IS NOT NULL
       AND coalesce(p_commune = ANY(p_territory)
                    OR left(p_commune, 4) = ANY(p_territory)
                    OR left(p_commune, 3) = ANY(p_territory)
                    OR left(p_commune, 2) = ANY(p_territory)
                    OR left(p_commune, 1) = ANY(p_territory)
                    OR '' = ANY(p_territory), false)
$$;

CREATE OR REPLACE FUNCTION pass_redeem(
    p_serial text, p_token text, p_claimed_programme_id bigint, p_claimed_value_cents bigint,
    p_site_id bigint, p_user_id bigint, p_day date, p_at timestamptz,
    p_service text, p_demarche_family text, p_scanned_at timestamptz DEFAULT NULL,
    p_offline_max_age interval DEFAULT NULL, p_clock_skew interval DEFAULT NULL,
    p_dry_run boolean DEFAULT false,
    OUT refusal text, OUT redemption_id bigint, OUT cheque_id bigint, OUT serial text,
    OUT status text, OUT value_cents bigint, OUT valid_from date, OUT redeem_until date,
    OUT redeemed_at timestamptz, OUT redeemed_here boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    c record;
    v_entry record;
    v_accounts text[];
BEGIN
    redeemed_here := false;
    -- An offline scan: at most p_offline_max_age old, at most p_clock_skew ahead (the
    -- device's clock). The bounds are pass_.redemption.OFFLINE_MAX_AGE and CLOCK_SKEW, which
    -- expiry and retention depend on too.
    IF p_scanned_at IS NOT NULL
       AND (p_scanned_at < p_at - p_offline_max_age OR p_scanned_at > p_at + p_clock_skew)
    THEN
        refusal := 'invalid_scanned_at';
        RETURN;
    END IF;
    FOR attempt IN 1..3 LOOP
        -- The site and the cheque, in one read.
        SELECT o.kind = 'site' AND o.qualification = 'qualified' AS site_qualified,
               o.commune_insee, ch.id, ch.serial, ch.token, ch.programme_id, ch.value_cents,
               ch.status, ch.valid_from, ch.redeem_until, ch.status_changed_at, p.territory,
               r.id AS live_id, r.redeemed_at AS live_at, r.site_id AS live_site,
               -- whether the entry's two accounts exist already (the usual case): then
               -- ledger_open_accounts, a call and a query of its own, is not needed
               EXISTS (SELECT 1 FROM ledger_account a
                       WHERE a.code = 'site:' || p_site_id || ':payable')
               AND EXISTS (SELECT 1 FROM ledger_account a
                           WHERE a.code = 'programme:' || ch.programme_id || ':outstanding')
                   AS accounts_open
        INTO c
        FROM organisation o
        LEFT JOIN cheque ch ON ch.serial = p_serial
        LEFT JOIN programme p ON p.id = ch.programme_id
        LEFT JOIN redemption r ON r.cheque_id = ch.id AND r.reversed_at IS NULL
        WHERE o.id = p_site_id;
        -- The site: a site, qualified.
        IF c.site_qualified IS NOT TRUE THEN
            refusal := 'site_not_qualified';
            RETURN;
        END IF;
        IF c.id IS NULL THEN
            refusal := 'cheque_not_found';
            RETURN;
        END IF;
        cheque_id := c.id;
        serial := c.serial;
        status := c.status;
        value_cents := c.value_cents;
        valid_from := c.valid_from;
        redeem_until := c.redeem_until;
        -- The token: the very one stored at issuance (we signed it), or a token whose
        -- signature the caller verified and whose claims match the cheque. Never redeem on a
        -- token's word alone.
        IF (p_token IS NOT NULL AND p_token IS DISTINCT FROM c.token)
           OR (p_claimed_programme_id IS NOT NULL
               AND (p_claimed_programme_id <> c.programme_id
                    OR p_claimed_value_cents IS DISTINCT FROM c.value_cents))
        THEN
            refusal := 'invalid_token';
            RETURN;
        END IF;
        -- The territory (pass_in_territory, above).
        IF NOT pass_in_territory(c.commune_insee, c.territory) THEN
            refusal := 'site_not_eligible';
            RETURN;
        END IF;
        -- The cheque's state: already redeemed says when, never where (except to the site
        -- that redeemed it: a double scan).
        IF c.status = 'redeemed' THEN
            refusal := 'cheque_already_redeemed';
            redeemed_at := coalesce(c.live_at, c.status_changed_at);
            IF c.live_site = p_site_id THEN
                redeemed_here := true;
                redemption_id := c.live_id;
            END IF;
            RETURN;
        ELSIF c.status = 'cancelled' THEN
            refusal := 'cheque_cancelled';
            RETURN;
        ELSIF c.status = 'expired' THEN
            refusal := 'cheque_expired';
            RETURN;
        ELSIF c.status <> 'active' THEN
            refusal := 'cheque_not_active';
            RETURN;
        END IF;
        -- The dates, on the Paris day: from valid_from to redeem_until, both included.
        IF p_day < c.valid_from THEN
            refusal := 'cheque_not_yet_valid';
            RETURN;
        ELSIF p_day > c.redeem_until THEN
            refusal := 'cheque_expired';
            RETURN;
        END IF;
        IF p_dry_run THEN
            RETURN;
        END IF;
        -- The ledger accounts the entry will use, opened (if new) before the cheque is locked:
        -- see ledger_open_accounts (ledger/posting.sql).
        -- The cheque's value moves from the programme's outstanding to the site's payable.
        v_accounts := ARRAY['programme:' || c.programme_id || ':outstanding',
                            'site:' || p_site_id || ':payable'];
        IF NOT c.accounts_open THEN
            PERFORM ledger_open_accounts(v_accounts);
        END IF;
        -- The claim. "Still active" is written `= (SELECT 'active')`: same meaning, but the
        -- planner cannot match it to the partial index ix_cheque_active_redeem_until (WHERE
        -- status = 'active', for expiry), which lagging statistics (a campaign of new
        -- cheques) made look nearly empty: a plan starting from it scanned every active
        -- cheque. The claim finds its cheque by id, whatever the statistics.
        WITH claimed AS (
            UPDATE cheque ch SET status = 'redeemed', status_changed_at = p_at
            WHERE ch.id = c.id AND ch.status = (SELECT CAST('active' AS text))
            RETURNING ch.id
        )
        INSERT INTO redemption AS r (cheque_id, programme_id, site_id, user_id, value_cents,
                                     service, demarche_family, redeemed_at, scanned_at)
        SELECT claimed.id, c.programme_id, p_site_id, p_user_id, c.value_cents, p_service,
               p_demarche_family, p_at, p_scanned_at
        FROM claimed
        RETURNING r.id INTO redemption_id;
        IF redemption_id IS NOT NULL THEN
            v_entry := ledger_post(
                'redeem:' || redemption_id, 'redemption', jsonb_build_object('serial', c.serial),
                p_at, v_accounts, ARRAY[-c.value_cents, c.value_cents]);
            IF NOT v_entry.created THEN
                RAISE EXCEPTION 'redemption % found its ledger key taken', redemption_id;
            END IF;
            status := 'redeemed';
            redeemed_at := p_at;
            RETURN;
        END IF;
    END LOOP;
    -- Reversed and redeemed again three times over while we looked.
    refusal := 'cheque_already_redeemed';
    redeemed_at := NULL;
END
$$;
