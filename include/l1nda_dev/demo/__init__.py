"""The local demo: `make demo` tells the whole story end to end; `make airflow` opens the same world in the UI.

Nothing needs Docker or a server: embedded PostgreSQL, the Nmbrs simulator and an SMTP sink that writes
every mail to `var/mail/*.eml` run on 127.0.0.1 and stop with the demo, also on Ctrl-C.
"""
