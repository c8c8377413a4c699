"""The wallet's invariants, held by Postgres so that no code path (raw SQL included) breaks them.

1. Ledger entries are immutable: UPDATE and DELETE are refused.
2. Entries of an org form a chain: sequence n+1 follows n, and
   balance_after(n+1) = balance_after(n) + amount(n+1). So balance_after(n) = sum(amount 1..n).
3. A refund reverses a debit of the same org, and the refunds of one debit never exceed it
   (the debit row is locked while checking, so concurrent refunds serialize).
4. At commit (deferred): wallet.balance = balance_after of its newest entry, and no entry is
   newer than wallet.last_sequence. With (2): balance == sum(amount) at every commit.
"""

from django.db import migrations

from voxanne.tenancy import enable_row_level_security

IMMUTABLE = """
CREATE FUNCTION billing_ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER ledger_immutable BEFORE UPDATE OR DELETE ON billing_ledger_entry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_immutable();
"""

CHAIN_AND_REFUNDS = """
CREATE FUNCTION billing_ledger_check_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    previous_balance bigint;
    original billing_ledger_entry%ROWTYPE;
    already_refunded bigint;
BEGIN
    IF NEW.sequence = 1 THEN
        previous_balance := 0;
    ELSE
        SELECT balance_after_pence INTO previous_balance FROM billing_ledger_entry
            WHERE org_id = NEW.org_id AND sequence = NEW.sequence - 1;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger sequence gap' USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF NEW.balance_after_pence <> previous_balance + NEW.amount_pence THEN
        RAISE EXCEPTION 'ledger balance_after does not follow' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM billing_wallet WHERE id = NEW.wallet_id AND org_id = NEW.org_id) THEN
        RAISE EXCEPTION 'ledger wallet belongs to another org' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.reverses_id IS NOT NULL THEN
        SELECT * INTO original FROM billing_ledger_entry WHERE id = NEW.reverses_id FOR NO KEY UPDATE;
        IF NOT FOUND OR original.org_id <> NEW.org_id OR original.amount_pence >= 0 THEN
            RAISE EXCEPTION 'a refund must reverse a debit of the same org'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        SELECT COALESCE(SUM(amount_pence), 0) INTO already_refunded FROM billing_ledger_entry
            WHERE reverses_id = NEW.reverses_id;
        IF already_refunded + NEW.amount_pence > -original.amount_pence THEN
            RAISE EXCEPTION 'refund exceeds the refundable remainder'
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER ledger_check_insert BEFORE INSERT ON billing_ledger_entry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_check_insert();
"""

BALANCE_MATCHES_LEDGER = """
CREATE FUNCTION billing_wallet_matches_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    w billing_wallet%ROWTYPE;
    newest_balance bigint;
    scope text := current_setting('app.system', true);
BEGIN
    -- Deferred checks run at commit, possibly after the tenant scope was left: read this
    -- org's rows in the system scope, then put the scope back.
    PERFORM set_config('app.system', 'on', true);
    SELECT * INTO w FROM billing_wallet WHERE org_id = NEW.org_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'wallet not visible while checking the ledger'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF w.last_sequence = 0 THEN
        newest_balance := 0;
    ELSE
        SELECT balance_after_pence INTO newest_balance FROM billing_ledger_entry
            WHERE org_id = w.org_id AND sequence = w.last_sequence;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'wallet points at a missing ledger entry'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF w.balance_pence <> newest_balance OR EXISTS (
        SELECT 1 FROM billing_ledger_entry WHERE org_id = w.org_id AND sequence > w.last_sequence
    ) THEN
        RAISE EXCEPTION 'wallet balance does not equal the sum of its ledger'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    PERFORM set_config('app.system', COALESCE(scope, 'off'), true);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER wallet_matches_ledger AFTER INSERT OR UPDATE ON billing_wallet
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_wallet_matches_ledger();
CREATE CONSTRAINT TRIGGER ledger_matches_wallet AFTER INSERT ON billing_ledger_entry
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION billing_wallet_matches_ledger();
"""


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [
        enable_row_level_security("billing_wallet"),
        enable_row_level_security("billing_ledger_entry"),
        migrations.RunSQL(
            IMMUTABLE,
            "DROP TRIGGER ledger_immutable ON billing_ledger_entry; DROP FUNCTION billing_ledger_immutable();",
        ),
        migrations.RunSQL(
            CHAIN_AND_REFUNDS,
            "DROP TRIGGER ledger_check_insert ON billing_ledger_entry; DROP FUNCTION billing_ledger_check_insert();",
        ),
        migrations.RunSQL(
            BALANCE_MATCHES_LEDGER,
            "DROP TRIGGER ledger_matches_wallet ON billing_ledger_entry;"
            "DROP TRIGGER wallet_matches_ledger ON billing_wallet;"
            "DROP FUNCTION billing_wallet_matches_ledger();",
        ),
    ]
