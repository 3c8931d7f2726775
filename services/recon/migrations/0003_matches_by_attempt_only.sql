-- Matches are looked up by attempt (settled by an earlier run?), never scanned by run in a hot
-- path; the run index cost more at COPY time than it saved (docs/PERFORMANCE.md).
DROP INDEX recon_matches_run;
