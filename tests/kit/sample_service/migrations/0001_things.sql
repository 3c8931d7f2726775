CREATE TABLE things (id text PRIMARY KEY, n integer NOT NULL);
