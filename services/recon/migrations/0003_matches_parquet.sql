-- Per-line matches of a run are kept as Parquet beside the run (RECON_DATA_DIR/matches/...),
-- not as rows here: a day of a million lines costs seconds to write into PostgreSQL and is read
-- only by the run's own reports. PostgreSQL keeps runs, breaks, aggregates and resolutions.
-- Runs made before this change have matches_path NULL; their matches stay in recon_matches.
ALTER TABLE recon_runs ADD COLUMN matches_path text;
