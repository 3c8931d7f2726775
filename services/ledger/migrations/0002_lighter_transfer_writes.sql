-- Every batch appends thousands of transfer rows; each foreign key costs two RI-trigger lookups
-- per row and each index one more insertion, which is what the single writer waits on.
-- Account existence is checked by the writer before any transfer is applied and accounts can
-- never be deleted (accounts_guard), so the foreign keys only re-check a fact that cannot
-- change. "Balance as of a time" finds its sequence number by binary search over the primary
-- key instead (created_at never decreases along seq), so that index goes too.
ALTER TABLE transfers DROP CONSTRAINT transfers_debit_account_id_fkey;
ALTER TABLE transfers DROP CONSTRAINT transfers_credit_account_id_fkey;
DROP INDEX transfers_created_at;
