-- The redemption (DESIGN.md §5), written once: every rule, in the order a mediator needs
-- them, and the writes. Installed by migration 0008_redeem_function (again by 0014, 0015 and
-- 0016, which made it take many scans at once). Every road calls it: the online API and the
-- mediator's scan page (`pass_.redemption.redeem_online`: one scan, or the scans that arrived
-- together), the offline batch (`redeem_offline`: the whole batch in one call), and the
-- cheque check (`check_cheque`, with p_dry_run: the same rules, nothing written).
--
-- Scan i is (p_serials[i], p_tokens[i], …): the cheque's serial (read by Python from the typed
-- serial or the QR token); the QR token as scanned in its canonical form (upper case), or NULL
-- for a typed serial; what a token *whose Ed25519 signature Python verified* says
-- (p_claimed_programme_ids, p_claimed_values: only for a genuine token that is not the stored
-- copy, e.g. signed again after a key rotation), else NULL; the site, the user, the Paris day
-- the rules are judged on (the scan's day offline), the service and démarche; and its
-- scanned_at for an offline scan (NULL online), judged against p_at (the instant recorded)
-- with the accepted range's bounds.
--
-- Returns one row a scan (`n`, its position): `refusal` NULL when redeemed (or, in a dry run,
-- redeemable), else a stable code:
--   invalid_scanned_at, site_not_qualified, cheque_not_found, invalid_token,
--   site_not_eligible, cheque_already_redeemed, cheque_cancelled, cheque_expired,
--   cheque_not_active, cheque_not_yet_valid
-- with the cheque's facts (for the answer and the check) and, for cheque_already_redeemed,
-- when (`redeemed_at`) and, only if it was this very site, which redemption
-- (`redeemed_here`, `redemption_id`: an offline double scan). A refusal writes nothing.
--
-- The scans are decided as if one after the other, in the order of their cheque and, for one
-- cheque, of (scanned_at, position): of two scans of one cheque the earlier one redeems it and
-- the later one finds it redeemed (by this site: a double scan).
--
-- Exactly once: the claim is one conditional UPDATE (`… WHERE id = … AND status = 'active'`)
-- over the cheques to redeem, locked first in the order of their ids (two calls sharing
-- cheques never deadlock); a concurrent claim waiting on a row lock re-evaluates it once the
-- first commits, finds 'redeemed' and claims nothing; the partial unique index
-- uq_redemption_live_cheque (one live redemption per cheque) backs it. The scans of a cheque
-- whose claim found nothing are decided again on a fresh read (a reversal may have made it
-- active meanwhile), three times at most.
--
-- Set-based: each step is one statement for all the scans (the read, the claim, the
-- redemptions, the ledger entries through `ledger_post_many`), so an offline batch of 500
-- costs a handful of statements, not 500 calls.

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

-- The ledger accounts of a redemption, written once: the cheque's value moves from its
-- programme's outstanding to the site's payable (postings in this order). SQL, inlined where
-- it is called: `pass_redeem` opens these accounts, then posts to them.
CREATE OR REPLACE FUNCTION pass_redemption_accounts(p_programme_id bigint, p_site_id bigint)
RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
SELECT ARRAY['programme:' || p_programme_id || ':outstanding', 'site:' || p_site_id || ':payable']
$$;

-- One scan's decision, carried from one statement of `pass_redeem` to the next. (Created
-- once; a revision that changes it drops it first.)
DO $$
BEGIN
    CREATE TYPE pass_redeem_scan AS (
        n int, k int, refusal text, claim boolean, cheque_id bigint, serial text,
        programme_id bigint, status text, value_cents bigint, valid_from date, redeem_until date,
        redeemed_at timestamptz, site_id bigint, user_id bigint, service text,
        demarche_family text, scanned_at timestamptz);
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;

CREATE OR REPLACE FUNCTION pass_redeem(
    p_serials text[], p_tokens text[], p_claimed_programme_ids bigint[],
    p_claimed_values bigint[], p_site_ids bigint[], p_user_ids bigint[], p_days date[],
    p_services text[], p_demarches text[], p_scanned_ats timestamptz[], p_at timestamptz,
    p_offline_max_age interval DEFAULT NULL, p_clock_skew interval DEFAULT NULL,
    p_dry_run boolean DEFAULT false)
RETURNS TABLE (n int, refusal text, redemption_id bigint, cheque_id bigint, serial text,
               status text, value_cents bigint, valid_from date, redeem_until date,
               redeemed_at timestamptz, redeemed_here boolean)
-- (Generic plans, made once a session, as for ledger_post_many: one scan or five hundred.)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_count int := coalesce(cardinality(p_serials), 0);
    v_todo int[];            -- the scans still to decide (positions)
    v_scans pass_redeem_scan[];
    v_claims bigint;         -- the scans that claim their cheque, this round
    v_made bigint[];         -- the redemptions of the cheques claimed, in the order of
    v_made_cheques bigint[]; -- these cheques
    v_keys text[];           -- their ledger entries, for ledger_post_many
    v_memos jsonb[];
    v_entry_of int[];
    v_codes text[];
    v_amounts bigint[];
    v_taken bigint;
BEGIN
    IF coalesce(cardinality(p_tokens), 0) <> v_count
       OR coalesce(cardinality(p_claimed_programme_ids), 0) <> v_count
       OR coalesce(cardinality(p_claimed_values), 0) <> v_count
       OR coalesce(cardinality(p_site_ids), 0) <> v_count
       OR coalesce(cardinality(p_user_ids), 0) <> v_count
       OR coalesce(cardinality(p_days), 0) <> v_count
       OR coalesce(cardinality(p_services), 0) <> v_count
       OR coalesce(cardinality(p_demarches), 0) <> v_count
       OR coalesce(cardinality(p_scanned_ats), 0) <> v_count THEN
        RAISE EXCEPTION 'pass_redeem: one value of each argument a scan' USING ERRCODE = '22023';
    END IF;
    v_todo := array(SELECT generate_series(1, v_count));
    FOR attempt IN 1..3 LOOP
        EXIT WHEN cardinality(v_todo) = 0;
        v_made := NULL;
        v_made_cheques := NULL;
        -- Every rule, for every scan still to decide, in one read: the site, the cheque and
        -- its programme.
        SELECT array_agg(ROW(
                   d.n, d.k,
                   coalesce(d.gate, CASE WHEN NOT p_dry_run AND d.k > d.first_ok
                                         THEN 'cheque_already_redeemed' ELSE d.state END),
                   NOT p_dry_run AND d.gate IS NULL AND d.state IS NULL AND d.k = d.first_ok,
                   d.cheque_id, d.serial, d.programme_id, d.status, d.value_cents, d.valid_from,
                   d.redeem_until,
                   -- (and which redemption, where: read with the answers, for these scans)
                   CASE WHEN d.gate IS NULL AND d.status = 'redeemed'
                        THEN d.status_changed_at END,
                   d.site_id, d.user_id, d.service, d.demarche, d.scanned_at
               )::pass_redeem_scan),
               count(*) FILTER (WHERE NOT p_dry_run AND d.gate IS NULL AND d.state IS NULL
                                AND d.k = d.first_ok)
        INTO v_scans, v_claims
        FROM (
            SELECT g.*, min(g.k) FILTER (WHERE g.gate IS NULL AND g.state IS NULL)
                            OVER (PARTITION BY g.cheque_id) AS first_ok
            FROM (
                SELECT f.*, row_number() OVER (PARTITION BY f.cheque_id
                                               ORDER BY f.scanned_at, f.n)::int AS k
                FROM (
                    SELECT s.n::int AS n, s.site_id, s.user_id, s.service, s.demarche,
                           s.scanned_at, ch.id AS cheque_id, ch.serial, ch.programme_id,
                           ch.status, ch.value_cents, ch.valid_from, ch.redeem_until,
                           ch.status_changed_at,
                           CASE
                           -- An offline scan: at most p_offline_max_age old, at most
                           -- p_clock_skew ahead (the device's clock). The bounds are
                           -- pass_.redemption.OFFLINE_MAX_AGE and CLOCK_SKEW, which expiry and
                           -- retention depend on too.
                           WHEN s.scanned_at < p_at - p_offline_max_age
                                OR s.scanned_at > p_at + p_clock_skew
                               THEN 'invalid_scanned_at'
                           -- The site: a site, qualified.
                           WHEN o.kind IS DISTINCT FROM 'site'
                                OR o.qualification IS DISTINCT FROM 'qualified'
                               THEN 'site_not_qualified'
                           WHEN ch.id IS NULL THEN 'cheque_not_found'
                           -- The token: the very one stored at issuance (we signed it), or a
                           -- token whose signature the caller verified and whose claims match
                           -- the cheque. Never redeem on a token's word alone.
                           WHEN (s.token IS NOT NULL AND s.token IS DISTINCT FROM ch.token)
                                OR (s.claimed_programme_id IS NOT NULL
                                    AND (s.claimed_programme_id <> ch.programme_id
                                         OR s.claimed_value IS DISTINCT FROM ch.value_cents))
                               THEN 'invalid_token'
                           -- The territory (pass_in_territory, above).
                           WHEN NOT pass_in_territory(o.commune_insee, p.territory)
                               THEN 'site_not_eligible'
                           END AS gate,
                           -- The cheque's state: already redeemed says when, never where
                           -- (except to the site that redeemed it: a double scan); then the
                           -- dates, on the Paris day: from valid_from to redeem_until, both
                           -- included.
                           CASE ch.status
                           WHEN 'redeemed' THEN 'cheque_already_redeemed'
                           WHEN 'cancelled' THEN 'cheque_cancelled'
                           WHEN 'expired' THEN 'cheque_expired'
                           WHEN 'active' THEN
                               CASE WHEN s.day < ch.valid_from THEN 'cheque_not_yet_valid'
                                    WHEN s.day > ch.redeem_until THEN 'cheque_expired' END
                           ELSE 'cheque_not_active'
                           END AS state
                    FROM unnest(p_serials, p_tokens, p_claimed_programme_ids, p_claimed_values,
                                p_site_ids, p_user_ids, p_days, p_services, p_demarches,
                                p_scanned_ats)
                         WITH ORDINALITY AS s(serial, token, claimed_programme_id,
                                              claimed_value, site_id, user_id, day, service,
                                              demarche, scanned_at, n)
                    JOIN unnest(v_todo) AS t(n) ON t.n = s.n
                    LEFT JOIN organisation o ON o.id = s.site_id
                    LEFT JOIN cheque ch ON ch.serial = s.serial
                    LEFT JOIN programme p ON p.id = ch.programme_id
                ) AS f
            ) AS g
        ) AS d;

        IF v_claims > 0 THEN
            -- The ledger accounts the entries will use, opened (if new) before any cheque is
            -- locked: see ledger_open_accounts (ledger/posting.sql).
            PERFORM ledger_open_accounts(array(
                SELECT DISTINCT a.code
                FROM unnest(v_scans) AS d
                CROSS JOIN LATERAL unnest(pass_redemption_accounts(d.programme_id, d.site_id))
                     AS a(code)
                WHERE d.claim));
            -- The claim, then the redemptions of the cheques claimed, and their ledger entries'
            -- arguments (`redeem:<redemption id>`, the memo naming the cheque's serial), in one
            -- statement. The cheques are locked
            -- in the order of their ids first. "Still active" is written `= (SELECT 'active')`:
            -- same meaning, but the planner cannot match it to the partial index
            -- ix_cheque_active_redeem_until (WHERE status = 'active', for expiry), which
            -- lagging statistics (a campaign of new cheques) made look nearly empty: a plan
            -- starting from it scanned every active cheque. The claim finds its cheques by id,
            -- whatever the statistics.
            WITH locked AS (
                SELECT ch.id FROM cheque ch
                WHERE ch.id IN (SELECT d.cheque_id FROM unnest(v_scans) AS d WHERE d.claim)
                ORDER BY ch.id
                FOR UPDATE
            ), claimed AS (
                UPDATE cheque ch SET status = 'redeemed', status_changed_at = p_at
                FROM locked
                WHERE ch.id = locked.id AND ch.status = (SELECT CAST('active' AS text))
                RETURNING ch.id
            ), made AS (
                INSERT INTO redemption AS r (cheque_id, programme_id, site_id, user_id,
                                             value_cents, service, demarche_family, redeemed_at,
                                             scanned_at)
                SELECT d.cheque_id, d.programme_id, d.site_id, d.user_id, d.value_cents,
                       d.service, d.demarche_family, p_at, d.scanned_at
                FROM unnest(v_scans) AS d
                JOIN claimed ON claimed.id = d.cheque_id
                WHERE d.claim
                ORDER BY d.cheque_id
                RETURNING r.id, r.cheque_id, r.programme_id, r.site_id, r.value_cents
            ), m AS (
                SELECT row_number() OVER (ORDER BY made.cheque_id)::int AS i, made.*, d.serial
                FROM made
                JOIN unnest(v_scans) AS d ON d.claim AND d.cheque_id = made.cheque_id
            )
            SELECT array_agg(m.id ORDER BY m.i) FILTER (WHERE y.k = 1),
                   array_agg(m.cheque_id ORDER BY m.i) FILTER (WHERE y.k = 1),
                   array_agg('redeem:' || m.id ORDER BY m.i) FILTER (WHERE y.k = 1),
                   array_agg(jsonb_build_object('serial', m.serial) ORDER BY m.i)
                       FILTER (WHERE y.k = 1),
                   array_agg(m.i ORDER BY m.i, y.k), array_agg(y.code ORDER BY m.i, y.k),
                   array_agg(y.amount ORDER BY m.i, y.k)
            INTO v_made, v_made_cheques, v_keys, v_memos, v_entry_of, v_codes, v_amounts
            FROM m
            CROSS JOIN LATERAL unnest(pass_redemption_accounts(m.programme_id, m.site_id),
                                      ARRAY[-m.value_cents, m.value_cents])
                 WITH ORDINALITY AS y(code, amount, k);
            IF v_made IS NOT NULL THEN
                SELECT count(*) FILTER (WHERE NOT l.created) INTO v_taken
                FROM ledger_post_many(
                    v_keys, array_fill(CAST('redemption' AS text), ARRAY[cardinality(v_keys)]),
                    v_memos, array_fill(p_at, ARRAY[cardinality(v_keys)]), v_entry_of, v_codes,
                    v_amounts) AS l;
                IF v_taken > 0 THEN
                    RAISE EXCEPTION 'a redemption found its ledger key taken';
                END IF;
            END IF;
        END IF;

        -- The answers of the scans decided: all but those of a cheque whose claim found
        -- nothing (decided again), until the last round (then already redeemed, when unknown:
        -- reversed and redeemed again three times over while we looked). A scan after the
        -- one that redeemed its cheque (`dup`) finds it redeemed, now, maybe by its own site.
        -- A cheque found redeemed before: its live redemption (`r`) says when, and whether it
        -- was at this very site (a double scan). It is read only for these scans — rare —
        -- so that the common road never depends on the redemptions' statistics (a plan made
        -- while they were few would scan them all at every call).
        RETURN QUERY
        SELECT d.n,
               CASE WHEN d.claim AND c.lost THEN 'cheque_already_redeemed' ELSE d.refusal END,
               CASE WHEN d.claim THEN c.made
                    WHEN x.dup THEN CASE WHEN c.site_id = d.site_id THEN c.made END
                    WHEN r.site_id = d.site_id THEN r.id END,
               d.cheque_id, d.serial,
               CASE WHEN d.k >= c.k AND NOT c.lost THEN 'redeemed' ELSE d.status END,
               d.value_cents, d.valid_from, d.redeem_until,
               CASE WHEN d.claim OR x.dup THEN CASE WHEN NOT c.lost THEN p_at END
                    ELSE coalesce(r.redeemed_at, d.redeemed_at) END,
               CASE WHEN x.dup THEN NOT c.lost AND c.site_id = d.site_id
                    ELSE coalesce(r.site_id = d.site_id, false) END
        FROM unnest(v_scans) AS d
        LEFT JOIN (SELECT d.cheque_id, d.k, d.site_id, m.id AS made, m.id IS NULL AS lost
                   FROM unnest(v_scans) AS d
                   LEFT JOIN unnest(v_made, v_made_cheques) AS m(id, cheque_id)
                        ON m.cheque_id = d.cheque_id
                   WHERE d.claim) AS c ON c.cheque_id = d.cheque_id
        CROSS JOIN LATERAL (SELECT coalesce(d.k > c.k AND d.refusal = 'cheque_already_redeemed',
                                            false) AS dup) AS x
        LEFT JOIN LATERAL (
            SELECT r.id, r.redeemed_at, r.site_id FROM redemption r
            WHERE d.status = 'redeemed' AND d.refusal = 'cheque_already_redeemed'
                  AND r.cheque_id = d.cheque_id AND r.reversed_at IS NULL
            OFFSET 0) AS r ON true
        WHERE c.lost IS NOT TRUE OR attempt = 3
        ORDER BY d.n;
        EXIT WHEN coalesce(cardinality(v_made), 0) = v_claims;
        v_todo := array(
            SELECT d.n FROM unnest(v_scans) AS d
            JOIN unnest(v_scans) AS c ON c.claim AND c.cheque_id = d.cheque_id
            LEFT JOIN unnest(v_made_cheques) AS m(cheque_id) ON m.cheque_id = c.cheque_id
            WHERE m.cheque_id IS NULL);
    END LOOP;
END
$$;
