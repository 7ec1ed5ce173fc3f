"""The read-only web console: the migration history, the schema and the drift report in a browser.

Served under `/console` on the metrics listener (`mount` in app.py wraps that listener's WSGI
application). Three layers, each replaceable on its own:

- data.py: the reads, one function per page, over the catalog's own read functions
  (proxy/catalog/store.py) and, where the catalog offers no function yet, read-only queries of
  its tables; returns plain values, the same data the CLI's `--json` prints;
- pages.py: pure functions from those values to HTML, every value escaped (markup.py);
- app.py: the WSGI routes, access control (config `[console]`), path prefixes and the database
  connection.
"""
