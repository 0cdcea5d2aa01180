-- The ledger's posting, as database functions: the one definition of how an entry is written.
-- Installed by migration 0008_redeem_function (again by 0015); `ledger.service.post` /
-- `post_many` call `ledger_post`, and so does any SQL that must post inside its own
-- transaction (the redemption, pass_/redeem.sql). Nothing else inserts into ledger_entry or
-- ledger_posting.

-- The canonical JSON text of a jsonb value, as Python's
-- json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes it:
-- object keys sorted by code point (UTF-8 bytes, collation "C"), no spaces, strings escaped as
-- to_json does (", \, \b \f \n \r \t, other control characters as \u00xx, nothing else).
CREATE OR REPLACE FUNCTION ledger_canonical_json(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    CASE jsonb_typeof(v)
    WHEN 'object' THEN
        RETURN '{' || coalesce((
            SELECT string_agg(to_json(e.k)::text || ':'
                              || CASE WHEN jsonb_typeof(e.x) IN ('object', 'array')
                                      THEN ledger_canonical_json(e.x) ELSE e.x::text END,
                              ',' ORDER BY e.k COLLATE "C")
            FROM jsonb_each(v) AS e(k, x)), '') || '}';
    WHEN 'array' THEN
        RETURN '[' || coalesce((
            SELECT string_agg(ledger_canonical_json(a.x), ',' ORDER BY a.n)
            FROM jsonb_array_elements(v) WITH ORDINALITY AS a(x, n)), '') || ']';
    ELSE
        RETURN v::text;
    END CASE;
END
$$;

-- The fingerprint of what an entry says (not when): sha256, in hex, of
-- {"kind":<kind>,"memo":<memo or null>,"postings":[[<code>,<amount>],…]} with the postings
-- sorted by (code, amount). Same text as ledger.canonical.content_text.
-- (PL/pgSQL, the postings ordered by an insertion sort of their positions: an entry has a few
-- postings, and each statement a function runs costs far more than these comparisons —
-- as a SQL function ordering them with a query, every redemption paid 60 µs for it.)
CREATE OR REPLACE FUNCTION ledger_content_hash(p_kind text, p_memo jsonb, p_codes text[],
                                               p_amounts bigint[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_order int[] := '{}';
    v_text text := '';
    i int;
    j int;
BEGIN
    FOR n IN 1..coalesce(cardinality(p_codes), 0) LOOP
        -- insert position n after the positions whose (code, amount) is not greater
        j := cardinality(v_order);
        WHILE j > 0 AND (p_codes[v_order[j]] COLLATE "C" > p_codes[n] COLLATE "C"
                         OR (p_codes[v_order[j]] = p_codes[n]
                             AND p_amounts[v_order[j]] > p_amounts[n])) LOOP
            j := j - 1;
        END LOOP;
        v_order := v_order[1:j] || n || v_order[j + 1:];
    END LOOP;
    FOREACH i IN ARRAY v_order LOOP
        v_text := v_text || CASE WHEN v_text = '' THEN '' ELSE ',' END
                  || '[' || to_json(p_codes[i])::text || ',' || p_amounts[i] || ']';
    END LOOP;
    RETURN encode(sha256(convert_to(
        '{"kind":' || to_json(p_kind)::text
        || ',"memo":' || coalesce(ledger_canonical_json(p_memo), 'null')
        || ',"postings":[' || v_text || ']}', 'UTF8')), 'hex');
END
$$;

-- Open the accounts of `p_codes` not opened yet (an account is created on its first use).
-- A transaction that creates an account holds the new row until it commits, and any other
-- creating the same account waits for it: a caller that will lock other rows (pass_redeem
-- claims cheques) opens its accounts first, so it never waits for an account while holding
-- a row another transaction waits for (a deadlock, seen with two offline batches and an online
-- scan of a newly qualified site). When every account exists, nothing is written or locked.
-- (PL/pgSQL, not SQL: a SQL function's INSERT is planned again at every call; and the common
-- case, every account known, is one read, not an INSERT that inserts nothing.)
CREATE OR REPLACE FUNCTION ledger_open_accounts(p_codes text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM unnest(p_codes) AS x(code)
                   WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.code = x.code)) THEN
        RETURN;
    END IF;
    INSERT INTO ledger_account (code)
    SELECT DISTINCT x.code FROM unnest(p_codes) AS x(code)
    WHERE NOT EXISTS (SELECT 1 FROM ledger_account a WHERE a.code = x.code)
    ORDER BY x.code
    ON CONFLICT (code) DO NOTHING;
END
$$;

-- Post a balanced entry under an idempotency key, or find the one already posted under it.
-- Accounts are created on first use. Returns the entry's id and instant, whether this call
-- created it, its fingerprint, and whether an existing entry says the same (`same_content`;
-- false: an idempotency conflict, which the caller reports — nothing was written).
-- Raises (SQLSTATE LD001) for an entry with fewer than two postings, a zero amount or
-- postings that do not sum to zero: the deferred trigger of 0002_ledger re-checks at commit.
CREATE OR REPLACE FUNCTION ledger_post(
    p_key text, p_kind text, p_memo jsonb, p_at timestamptz, p_codes text[], p_amounts bigint[],
    OUT entry_id bigint, OUT created boolean, OUT created_at timestamptz,
    OUT content_hash text, OUT same_content boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_total numeric := 0;
    v_amount bigint;
    v_existing text;
    v_written bigint;
    v_missing text[];
BEGIN
    IF coalesce(cardinality(p_codes), 0) < 2
       OR cardinality(p_codes) <> coalesce(cardinality(p_amounts), 0) THEN
        RAISE EXCEPTION 'an entry has at least two postings' USING ERRCODE = 'LD001',
            DETAIL = 'postings', HINT = coalesce(cardinality(p_codes), 0)::text;
    END IF;
    IF 0 = ANY(p_amounts) THEN
        RAISE EXCEPTION 'a posting has a non-zero amount' USING ERRCODE = 'LD001',
            DETAIL = 'amount', HINT = '0';
    END IF;
    -- (a loop, not a query: see ledger_content_hash)
    FOREACH v_amount IN ARRAY p_amounts LOOP
        v_total := v_total + coalesce(v_amount, 0);
    END LOOP;
    IF v_total <> 0 THEN
        RAISE EXCEPTION 'unbalanced entry %', p_key USING ERRCODE = 'LD001',
            DETAIL = 'total', HINT = v_total::text;
    END IF;
    content_hash := ledger_content_hash(p_kind, p_memo, p_codes, p_amounts);

    -- The entry and its postings in one statement (an entry whose key is taken inserts no
    -- posting); an account used for the first time is created, then its postings written
    -- (the common case, every account known, is this one statement).
    WITH e AS (
        INSERT INTO ledger_entry AS e (idempotency_key, kind, memo, created_at, content_hash)
        VALUES (p_key, p_kind, p_memo, coalesce(p_at, now()), ledger_post.content_hash)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING e.id, e.created_at
    ), p AS (
        INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
        SELECT e.id, a.id, x.amount
        FROM e
        CROSS JOIN unnest(p_codes, p_amounts) WITH ORDINALITY AS x(code, amount, n)
        JOIN ledger_account a ON a.code = x.code
        ORDER BY x.n
        RETURNING 1
    )
    SELECT e.id, e.created_at, (SELECT count(*) FROM p) INTO entry_id, created_at, v_written
    FROM e;
    IF entry_id IS NULL THEN
        -- ON CONFLICT waited for a concurrent writer of the key: its row is visible now.
        SELECT e.id, e.created_at, e.content_hash INTO entry_id, created_at, v_existing
        FROM ledger_entry e WHERE e.idempotency_key = p_key;
        created := false;
        same_content := v_existing = ledger_post.content_hash;
        content_hash := v_existing;
        RETURN;
    END IF;
    IF v_written < cardinality(p_codes) THEN
        SELECT array_agg(DISTINCT x.code) INTO v_missing
        FROM unnest(p_codes) AS x(code)
        WHERE NOT EXISTS (SELECT 1 FROM ledger_posting p JOIN ledger_account a
                          ON a.id = p.account_id
                          WHERE p.entry_id = ledger_post.entry_id AND a.code = x.code);
        PERFORM ledger_open_accounts(v_missing);
        INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
        SELECT ledger_post.entry_id, a.id, x.amount
        FROM unnest(p_codes, p_amounts) WITH ORDINALITY AS x(code, amount, n)
        JOIN ledger_account a ON a.code = x.code
        WHERE x.code = ANY(v_missing)
        ORDER BY x.n;
    END IF;
    created := true;
    same_content := true;
END
$$;
