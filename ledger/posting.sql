-- The ledger's posting, as database functions: the one definition of how an entry is written.
-- Installed by migration 0008_redeem_function (again by 0015); `ledger.service.post` /
-- `post_many` call `ledger_post`, and so does any SQL that must post inside its own
-- transaction (the redemption, pass_/redeem.sql). Nothing else inserts into ledger_entry or
-- ledger_posting.

-- The canonical JSON text of a jsonb value, as Python's
-- json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) writes it:
-- object keys sorted by code point (UTF-8 bytes, collation "C"), no spaces, strings escaped as
-- to_json does (", \, \b \f \n \r \t, other control characters as \u00xx, nothing else).
-- (An object of one key with a scalar value — the redemptions' memo — is written without a
-- query: its key and value read through a JSON path; each query costs more than the rest.)
CREATE OR REPLACE FUNCTION ledger_canonical_json(v jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    kv jsonb;
BEGIN
    CASE jsonb_typeof(v)
    WHEN 'object' THEN
        kv := jsonb_path_query_array(v, '$.keyvalue()');
        IF jsonb_array_length(kv) = 1
           AND jsonb_typeof(kv -> 0 -> 'value') NOT IN ('object', 'array') THEN
            RETURN '{' || (kv -> 0 -> 'key')::text || ':' || (kv -> 0 -> 'value')::text || '}';
        END IF;
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
-- (PL/pgSQL, the postings ordered by an insertion sort: an entry has a few postings, and each
-- statement a function runs costs far more than these comparisons — as a SQL function
-- ordering them with a query, every redemption paid 60 µs for it.)
CREATE OR REPLACE FUNCTION ledger_content_hash(p_kind text, p_memo jsonb, p_codes text[],
                                               p_amounts bigint[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_codes text[] := '{}';    -- the postings sorted so far
    v_amounts bigint[] := '{}';
    v_code text;
    v_amount bigint;
    v_text text := '';
    j int;
BEGIN
    FOR n IN 1..coalesce(cardinality(p_codes), 0) LOOP
        -- insert posting n after the sorted ones whose (code, amount) is not greater
        v_code := p_codes[n];
        v_amount := p_amounts[n];
        j := n - 1;
        WHILE j > 0 AND (v_codes[j] COLLATE "C" > v_code COLLATE "C"
                         OR (v_codes[j] = v_code AND v_amounts[j] > v_amount)) LOOP
            v_codes[j + 1] := v_codes[j];
            v_amounts[j + 1] := v_amounts[j];
            j := j - 1;
        END LOOP;
        v_codes[j + 1] := v_code;
        v_amounts[j + 1] := v_amount;
    END LOOP;
    FOR n IN 1..coalesce(cardinality(v_codes), 0) LOOP
        v_text := v_text || CASE WHEN n = 1 THEN '[' ELSE ',[' END
                  || to_json(v_codes[n])::text || ',' || v_amounts[n] || ']';
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
    IF NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT x.code FROM unnest(p_codes) AS x(code)) AS x
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

-- Post balanced entries, each under its idempotency key, or find the ones already posted under
-- them: the one definition of posting, for one entry (`ledger_post`, below) or many (the
-- redemptions of an offline batch, a clearing run) in a few statements, whatever their number.
-- Entry i is (p_keys[i], p_kinds[i], p_memos[i], p_ats[i]); its postings are the positions k
-- with p_entry_of[k] = i, in order. Accounts are created on first use. One row an entry, in
-- order: its id and instant, whether this call created it, its fingerprint, and whether an
-- existing entry says the same (`same_content`; false: an idempotency conflict, which the
-- caller reports — nothing was written for it). A key given twice is written once; its
-- second row is not `created`.
-- Raises (SQLSTATE LD001, for the first entry at fault) for an entry with fewer than two
-- postings, a zero amount or postings that do not sum to zero, and for arrays of unequal
-- lengths: the deferred trigger of 0002_ledger re-checks every entry at commit.
CREATE OR REPLACE FUNCTION ledger_post_many(
    p_keys text[], p_kinds text[], p_memos jsonb[], p_ats timestamptz[],
    p_entry_of int[], p_codes text[], p_amounts bigint[])
RETURNS TABLE (i int, entry_id bigint, created boolean, created_at timestamptz,
               content_hash text, same_content boolean)
-- (Generic plans, made once a session: the statements take arrays of any length, and their
-- generic plans suit one entry as well as a thousand; custom plans, made again at every call
-- for the length at hand, cost more than the work itself.)
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
DECLARE
    v_entries int := coalesce(cardinality(p_keys), 0);
    v_postings int := coalesce(cardinality(p_codes), 0);
    v_bad int;
    v_fault record;
    v_missing bigint;
    v_hashes text[];
    v_created_i int[];
    v_created_id bigint[];
    v_created_at timestamptz[];
BEGIN
    IF coalesce(cardinality(p_kinds), 0) <> v_entries
       OR coalesce(cardinality(p_memos), 0) <> v_entries
       OR coalesce(cardinality(p_ats), 0) <> v_entries
       OR coalesce(cardinality(p_entry_of), 0) <> v_postings
       OR coalesce(cardinality(p_amounts), 0) <> v_postings THEN
        RAISE EXCEPTION 'an entry has at least two postings' USING ERRCODE = 'LD001',
            DETAIL = 'postings', HINT = v_postings::text;
    END IF;
    IF v_entries = 0 THEN
        RETURN;
    END IF;
    -- Each entry balanced (two postings at least, none zero, summing to zero) and its
    -- fingerprint, in the entries' order.
    SELECT array_agg(CASE WHEN NOT x.bad THEN ledger_content_hash(x.kind, x.memo, x.codes,
                                                                  x.amounts) END ORDER BY x.n),
           min(x.n) FILTER (WHERE x.bad)
    INTO v_hashes, v_bad
    FROM (SELECT e.n, e.kind, e.memo, l.codes, l.amounts,
                 coalesce(l.postings, 0) < 2 OR l.zero OR l.total <> 0 AS bad
          FROM unnest(p_kinds, p_memos) WITH ORDINALITY AS e(kind, memo, n)
          LEFT JOIN (SELECT p.n, array_agg(p.code ORDER BY p.k) AS codes,
                            array_agg(p.amount ORDER BY p.k) AS amounts, count(*) AS postings,
                            bool_or(p.amount = 0) AS zero, sum(p.amount) AS total
                     FROM unnest(p_entry_of, p_codes, p_amounts)
                          WITH ORDINALITY AS p(n, code, amount, k)
                     GROUP BY p.n) AS l ON l.n = e.n) AS x;
    IF v_bad IS NOT NULL THEN
        SELECT count(*) AS postings, coalesce(bool_or(p.amount = 0), false) AS zero,
               coalesce(sum(p.amount), 0) AS total
        INTO v_fault
        FROM unnest(p_entry_of, p_amounts) AS p(n, amount) WHERE p.n = v_bad;
        IF v_fault.postings < 2 THEN
            RAISE EXCEPTION 'an entry has at least two postings' USING ERRCODE = 'LD001',
                DETAIL = 'postings', HINT = v_fault.postings::text;
        ELSIF v_fault.zero THEN
            RAISE EXCEPTION 'a posting has a non-zero amount' USING ERRCODE = 'LD001',
                DETAIL = 'amount', HINT = '0';
        END IF;
        RAISE EXCEPTION 'unbalanced entry %', p_keys[v_bad] USING ERRCODE = 'LD001',
            DETAIL = 'total', HINT = v_fault.total::text;
    END IF;
    -- The entries and their postings in one statement: the first row of each key; an entry
    -- whose key is taken inserts no posting. An account used for the first time is then
    -- created and its postings written (the common case, every account known, is this one
    -- statement).
    WITH x AS (
        SELECT DISTINCT ON (x.key) x.*
        FROM unnest(p_keys, p_kinds, p_memos, p_ats, v_hashes)
             WITH ORDINALITY AS x(key, kind, memo, at, hash, n)
        ORDER BY x.key, x.n
    ), e AS (
        INSERT INTO ledger_entry AS e (idempotency_key, kind, memo, created_at, content_hash)
        SELECT x.key, x.kind, x.memo, coalesce(x.at, now()), x.hash FROM x ORDER BY x.n
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING e.id, e.idempotency_key, e.created_at
    ), en AS (
        SELECT x.n, e.id, e.created_at FROM e JOIN x ON x.key = e.idempotency_key
    ), p AS (
        INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
        SELECT en.id, a.id, y.amount
        FROM en
        JOIN unnest(p_entry_of, p_codes, p_amounts) WITH ORDINALITY AS y(n, code, amount, k)
             ON y.n = en.n
        JOIN ledger_account a ON a.code = y.code
        ORDER BY y.k
        RETURNING 1
    )
    SELECT array_agg(en.n ORDER BY en.n), array_agg(en.id ORDER BY en.n),
           array_agg(en.created_at ORDER BY en.n),
           (SELECT count(*) FROM en JOIN unnest(p_entry_of) AS y(n) ON y.n = en.n)
               - (SELECT count(*) FROM p)
    INTO v_created_i, v_created_id, v_created_at, v_missing
    FROM en;
    IF v_missing > 0 THEN
        PERFORM ledger_open_accounts(p_codes);
        INSERT INTO ledger_posting (entry_id, account_id, amount_cents)
        SELECT c.id, a.id, y.amount
        FROM unnest(v_created_i, v_created_id) AS c(n, id)
        JOIN unnest(p_entry_of, p_codes, p_amounts) WITH ORDINALITY AS y(n, code, amount, k)
             ON y.n = c.n
        JOIN ledger_account a ON a.code = y.code
        WHERE NOT EXISTS (SELECT 1 FROM ledger_posting q
                          WHERE q.entry_id = c.id AND q.account_id = a.id)
        ORDER BY y.k;
    END IF;
    -- Every entry created here (the usual case): the answer is in hand.
    IF coalesce(cardinality(v_created_i), 0) = v_entries THEN
        RETURN QUERY
        SELECT c.n, c.id, true, c.at, c.hash, true
        FROM unnest(v_created_i, v_created_id, v_created_at, v_hashes) AS c(n, id, at, hash);
        RETURN;
    END IF;
    -- Else the entries of the keys taken (by an earlier call, a concurrent writer whose commit
    -- ON CONFLICT waited for, or an earlier row of this call), found as they stand, each by
    -- its key (OFFSET 0: one lookup a key, never a scan of the journal).
    RETURN QUERY
    SELECT x.n::int, coalesce(c.id, e.id), c.id IS NOT NULL, coalesce(c.at, e.created_at),
           coalesce(CASE WHEN c.id IS NOT NULL THEN x.hash END, e.content_hash),
           c.id IS NOT NULL OR e.content_hash = x.hash
    FROM unnest(p_keys, v_hashes) WITH ORDINALITY AS x(key, hash, n)
    LEFT JOIN unnest(v_created_i, v_created_id, v_created_at) AS c(n, id, at) ON c.n = x.n
    LEFT JOIN LATERAL (SELECT e.id, e.created_at, e.content_hash FROM ledger_entry e
                       WHERE c.id IS NULL AND e.idempotency_key = x.key OFFSET 0) AS e ON true
    ORDER BY x.n;
END
$$;

-- Post one balanced entry under an idempotency key, or find the one already posted under it:
-- `ledger_post_many` for one entry (its rules, its answer; SQLSTATE LD001 as it raises).
CREATE OR REPLACE FUNCTION ledger_post(
    p_key text, p_kind text, p_memo jsonb, p_at timestamptz, p_codes text[], p_amounts bigint[],
    OUT entry_id bigint, OUT created boolean, OUT created_at timestamptz,
    OUT content_hash text, OUT same_content boolean)
-- (PL/pgSQL, not SQL: a SQL function that is not inlined plans its query again at every call.)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.entry_id, r.created, r.created_at, r.content_hash, r.same_content
    INTO entry_id, created, created_at, content_hash, same_content
    FROM ledger_post_many(ARRAY[p_key], ARRAY[p_kind], ARRAY[p_memo], ARRAY[p_at],
                          array_fill(1, ARRAY[coalesce(cardinality(p_codes), 0)]), p_codes,
                          p_amounts) AS r;
END
$$;
