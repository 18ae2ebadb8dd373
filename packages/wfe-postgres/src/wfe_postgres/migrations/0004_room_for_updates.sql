-- Room on every page for a new version of each of its rows (fillfactor 50): an instance's
-- head row is written again at every step and a pointer row when its step ends. With room
-- on the same page, PostgreSQL stores the new version there without touching the table's
-- indexes (a heap-only tuple, HOT) when no indexed column changed: every write of a running
-- instance but its last. On full pages (the default, 100) most of the writes of many
-- instances running at once (a burst of 200 in the benchmark: 14% heap-only) inserted an
-- entry into each of the six indexes of workflows, and wrote that to the WAL. The cost: the
-- tables take up to twice the pages. Pages written from now on get the room.
ALTER TABLE workflows SET (fillfactor = 50);
ALTER TABLE pointers SET (fillfactor = 50);
